/**
 * The in-memory transport: the two ends of a connection between core
 * connections (or a core connection and TcpTest's scripted peer), each
 * played as the kernel would. No sockets, no descriptors, no timers.
 */
import { NetAddress } from "effect/net"
import { gather } from "../bytes.ts"
import type { Connection } from "../core/connection.ts"
import type { Transport, TransportEvents } from "../core/transport.ts"
import type * as TcpError from "../../TcpError.ts"
import type { Info } from "../tlsTypes.ts"

/** One direction of a connection: bytes in order, then perhaps the FIN. */
export class Pipe {
  private chunks: Array<Uint8Array> = []
  size = 0
  fin = false

  /** Appends bytes the pipe may keep (the caller's copy). */
  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    this.chunks.push(bytes)
    this.size += bytes.length
  }

  /** Puts bytes back at the head (a receive that gave up). */
  unshift(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    this.chunks.unshift(bytes)
    this.size += bytes.length
  }

  /** Removes and returns up to `count` bytes from the head. */
  take(count: number): Uint8Array {
    const out = new Uint8Array(Math.min(count, this.size))
    let at = 0
    while (at < out.length) {
      const head = this.chunks[0]
      if (head === undefined) break
      const n = Math.min(head.length, out.length - at)
      out.set(head.subarray(0, n), at)
      at += n
      if (n === head.length) this.chunks.shift()
      else this.chunks[0] = head.subarray(n)
    }
    this.size -= at
    return out
  }

  clear(): void {
    this.chunks = []
    this.size = 0
  }
}

/**
 * One end of an in-memory connection, played as the kernel would: it is
 * the transport of the core connection bound to it (the application's
 * socket, or an in-memory server's), or, on a scripted connection's server
 * side, is read and written by the `Peer` directly. `outgoing` holds what
 * this end sent that the other end has not taken (at most `window` bytes);
 * what arrives on `incoming` moves into the bound connection's slot as far
 * as it has room.
 */
export class Side implements Transport {
  /** Whoever waits on the network checks again (TcpTest's change signal). */
  private readonly changed: () => void
  readonly outgoing: Pipe
  readonly incoming: Pipe
  readonly window: number
  readonly localInet: NetAddress.InetAddress | undefined
  readonly remoteInet: NetAddress.InetAddress | undefined
  /** The other end of the connection. */
  other: Side | undefined
  /** The core connection bound to this end. */
  conn: Connection<Side> | undefined
  /** This end is gone (aborted, closed, or its connect gave up after the handshake). */
  released = false
  /** The other end reset the connection: an RST for this one. */
  reset = false
  private events: TransportEvents | undefined
  private paused = false
  private finDelivered = false
  private resetDelivered = false
  /** The bound connection's send waits for room in `outgoing`. */
  private waitingForRoom = false
  /** The TLS session this end plays, once upgraded: in memory there is no crypto, only its description. */
  tls: Info | undefined = undefined
  /** The failure a test injected into this connection's next handshake (`TcpTest.failTls`), taken when asked. */
  handshakeFailure: ((role: "client" | "server", syscall: string) => TcpError.TlsError | undefined) | undefined

  constructor(
    changed: () => void,
    outgoing: Pipe,
    incoming: Pipe,
    window: number,
    localInet: NetAddress.InetAddress | undefined,
    remoteInet: NetAddress.InetAddress | undefined
  ) {
    this.changed = changed
    this.outgoing = outgoing
    this.incoming = incoming
    this.window = window
    this.localInet = localInet
    this.remoteInet = remoteInet
  }

  /** A core connection takes this end as its transport. */
  bind(events: TransportEvents): this {
    this.events = events
    this.paused = false
    return this
  }

  /** The bound connection hands this end over (an upgrade to TLS). */
  release(): undefined {
    // What arrived and is not in the slot stays in `incoming`, behind the slot's bytes (see `adopt`).
    this.events = undefined
  }

  /**
   * The connection taking this end over binds it, and reads first the
   * bytes its predecessor had not: as a kernel would, they are still ahead
   * (they move into its slot on `resumeReading`, once it is built).
   */
  adopt(events: TransportEvents, leftover: Uint8Array, tls: Info): this {
    this.incoming.unshift(leftover)
    this.tls = tls
    return this.bind(events)
  }

  /** Bytes sent to this end that its connection has not consumed: in flight, or in its slot. */
  get unconsumed(): number {
    return this.incoming.size + (this.events?.unread ?? 0)
  }

  /** Resets the connection from this end (RST): bytes in flight either way are lost. */
  sendReset(): void {
    const other = this.other
    if (other === undefined || other.reset) return
    other.reset = true
    this.outgoing.clear()
    this.incoming.clear()
    other.wake()
  }

  // ------------------------------------------- the transport, for the core

  write(chunks: ReadonlyArray<Uint8Array>, offset: number, total: number): number | Error {
    const room = Math.max(0, this.window - this.outgoing.size)
    const n = Math.min(room, total - offset)
    if (n > 0) this.outgoing.push(gather(chunks, offset + n, offset))
    if (offset + n < total) this.waitingForRoom = true
    this.other?.wake()
    return offset + n
  }

  /** This end is the kernel: what it took is sent. */
  readonly flushed = true
  readonly taken = true

  end(): void {
    this.outgoing.fin = true
    this.other?.wake()
  }

  get gone(): Error | null | undefined {
    return this.released ? null : undefined
  }

  resumeReading(): void {
    this.paused = false
    this.pump()
    // What this end took from `incoming` is room for the other end's sends.
    this.other?.wake()
  }

  /**
   * The bound connection closes this end: an RST if it leaves bytes unread,
   * else a FIN. As on Node: bytes still in flight always count (the
   * kernel's queue); bytes in the slot only while this end has not sent
   * its FIN (Node cannot reset a socket whose shutdown is under way).
   */
  destroy(): void {
    if (this.released) return
    this.released = true
    const unread = this.incoming.size > 0 || ((this.events?.unread ?? 0) > 0 && !this.outgoing.fin)
    if (!this.reset && unread) this.sendReset()
    else this.outgoing.fin = true
    this.incoming.clear()
    this.other?.wake()
    this.events?.closed()
  }

  get localAddress(): string | undefined {
    return this.localInet === undefined ? undefined : NetAddress.formatInet(this.localInet)
  }

  /**
   * The other end acted: bytes, a FIN or an RST for this end's connection,
   * room for its sends; whoever waits on the network checks again.
   */
  wake(): void {
    this.pump()
    if (this.waitingForRoom && this.outgoing.size < this.window) {
      this.waitingForRoom = false
      this.events?.writable()
    }
    this.changed()
  }

  /** Moves what arrived into the bound connection's slot, as far as it has room. */
  private pump(): void {
    const events = this.events
    if (events === undefined || this.released) return
    if (this.reset) {
      if (this.resetDelivered) return
      this.resetDelivered = true
      return events.failed(Object.assign(new Error("connection reset by peer"), { code: "ECONNRESET", syscall: "read" }))
    }
    while (!this.paused && this.incoming.size > 0) {
      const region = events.region
      const n = Math.min(region.length, this.incoming.size)
      region.set(this.incoming.take(n))
      if (!events.received(n)) this.paused = true
    }
    if (this.incoming.size === 0 && this.incoming.fin && !this.finDelivered) {
      this.finDelivered = true
      events.ended()
    }
  }
}
