/**
 * The Node transport: the only code that touches `node:net` sockets and
 * Node's private fields. Two of those make the data path faster, and each
 * has a public fallback:
 *
 * - `_handle.fd`: sends write straight from the caller's memory to the
 *   descriptor; without it, a send hands Node a copied piece at a time and
 *   waits for Node's write callback for each.
 * - the accepted `_handle` moved into a socket built with `onread` (Node's
 *   `net.Server` ignores `onread`): accepted sockets read into their slot;
 *   without it, their `'data'` chunks are copied into the slot.
 *
 * `EFFECT_TCP_PORTABLE=1` forces the public path; so does a field that does
 * not look as expected, checked on each connection before it is used.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Tls from "node:tls"
import type { Deadline } from "../../Deadline.ts"
import * as TcpError from "../../TcpError.ts"
import type { NetAddress } from "effect/net"
import type { Info } from "../tlsTypes.ts"
import { fromNode, hostPort } from "../address.ts"
import { gather } from "../bytes.ts"
import { Connection } from "../core/connection.ts"
import type { Transport, TransportEvents } from "../core/transport.ts"
import type { SlotMemory } from "../pool.ts"
import { awaitEvent } from "../wait.ts"

/** Whether Node's private fields are off limits (`EFFECT_TCP_PORTABLE=1`). */
export const portable: boolean = process.env["EFFECT_TCP_PORTABLE"] === "1"

/** The most a waiting send hands Node at a time, copied: enough to learn when the socket can take more. */
const PIECE = 1024

/**
 * Without the descriptor, what a send hands Node at a time, copied: the
 * copy and what a send abandoned at its deadline still sends stay bounded.
 */
const PORTABLE_PIECE = 64 * 1024

/**
 * The descriptor under a connected Node socket, while Node still holds it
 * open (`undefined` once its handle is gone, so a number reused by another
 * file is never written to, where Node has none, and in portable mode).
 */
const descriptorOf = (socket: Net.Socket): number | undefined => {
  if (portable) return undefined
  const handle: unknown = Reflect.get(socket, "_handle")
  if (typeof handle !== "object" || handle === null) return undefined
  const fd: unknown = Reflect.get(handle, "fd")
  return typeof fd === "number" && fd >= 0 ? fd : undefined
}

/** `chunks` from byte `offset` on, as views. */
const remaining = (chunks: ReadonlyArray<Uint8Array>, offset: number): ReadonlyArray<Uint8Array> => {
  if (offset === 0) return chunks
  const rest: Array<Uint8Array> = []
  let position = 0
  for (const chunk of chunks) {
    const end = position + chunk.length
    if (end > offset) rest.push(position >= offset ? chunk : chunk.subarray(offset - position))
    position = end
  }
  return rest
}

/** Whether this Node's libuv reports a reset behind unread bytes as EOF (before 1.52): only then is the probe needed. */
const hidesResets: boolean = (() => {
  const [major = 0, minor = 0] = process.versions.uv.split(".").map(Number)
  return major < 1 || (major === 1 && minor < 52)
})()

/** One byte to read into where the stream has ended: nothing ever lands in it. */
const endProbe = new Uint8Array(1)

/**
 * The reset hidden behind an end of stream, if any. libuv before 1.52 (Node
 * 22) reports a peer's RST that arrives behind unread bytes as EOF, after
 * reading those bytes, and leaves the reset pending on the descriptor: one
 * read of it tells a FIN (0 bytes) from a reset (ECONNRESET). Node 24 reports
 * the reset itself.
 */
const pendingReset = (socket: Net.Socket): Error | undefined => {
  if (!hidesResets) return undefined
  const fd = descriptorOf(socket)
  if (fd === undefined) return undefined
  try {
    Fs.readSync(fd, endProbe)
    return undefined
  } catch (cause) {
    return cause instanceof Error && Reflect.get(cause, "code") === "ECONNRESET" ? cause : undefined
  }
}


const ignoreError = (): void => {}

/** What `socket.tls` shows of a TLS socket. */
export const infoOf = (socket: Tls.TLSSocket): Info => {
  const certificate = socket.getPeerCertificate()
  const authorizationError: unknown = socket.authorizationError
  return {
    protocol: socket.getProtocol() ?? undefined,
    cipher: socket.getCipher()?.name,
    alpnProtocol: typeof socket.alpnProtocol === "string" ? socket.alpnProtocol : undefined,
    authorized: socket.authorized,
    authorizationError: authorizationError instanceof Error
      ? authorizationError.message
      : authorizationError === undefined || authorizationError === null ? undefined : String(authorizationError),
    peerCertificate: certificate === null || Object.keys(certificate).length === 0 ? undefined : certificate
  }
}

/** A connection over a `net.Socket`, or a `tls.TLSSocket` over one. */
export class NodeTransport implements Transport {
  readonly socket: Net.Socket
  private readonly events: TransportEvents
  /** Reads arrive as `'data'` chunks to copy, not through `onread`. */
  readonly copying: boolean
  /**
   * The socket is TLS: its descriptor carries ciphertext, so nothing may be
   * written to or read from it directly (a `TLSSocket`'s handle still shows
   * the descriptor), and only a plain TCP handle can be reset.
   */
  readonly encrypted: boolean
  /** A chunk's bytes that did not fit in the slot when reading paused. */
  private pending: Uint8Array | undefined
  /** The memory a waiting send's pieces are copied into, reused once Node is done with the last one. */
  private scratch: Uint8Array | undefined

  constructor(events: TransportEvents, socket: Net.Socket, copying: boolean, encrypted = false) {
    this.events = events
    this.socket = socket
    this.copying = copying
    this.encrypted = encrypted
    socket.on("end", this.onEnd)
    socket.on("error", this.onError)
    socket.on("close", this.onClose)
    if (copying) {
      socket.on("data", this.onData)
      // The listener accepts with `pauseOnConnect`: reading starts once the slot is there.
      socket.resume()
    }
  }

  private readonly onEnd = (): void => {
    const reset = this.encrypted ? undefined : pendingReset(this.socket)
    // As Node 24 does with the reset it reads: 'error', then 'close'.
    if (reset !== undefined) return void this.socket.destroy(reset)
    this.events.ended()
  }
  private readonly onError = (error: Error): void => this.events.failed(error)
  private readonly onClose = (): void => this.events.closed()
  private readonly onData = (chunk: Buffer): void => this.deliver(chunk)

  /** Another connection takes the socket over (an upgrade to TLS): this one hears nothing more of it. */
  release(): Uint8Array | undefined {
    const socket = this.socket
    socket.off("end", this.onEnd)
    socket.off("error", this.onError)
    socket.off("close", this.onClose)
    socket.off("data", this.onData)
    // The TLS socket over it reports the connection's errors; an 'error' here with no listener would throw.
    socket.on("error", ignoreError)
    const pending = this.pending
    this.pending = undefined
    return pending
  }

  /** The descriptor to write to directly, if this socket has one that carries our bytes as they are. */
  private get descriptor(): number | undefined {
    return this.encrypted ? undefined : descriptorOf(this.socket)
  }

  /** Copies a chunk into the slot's ring, region by region; pauses the socket when the ring fills. */
  private deliver(chunk: Uint8Array): void {
    let at = 0
    while (at < chunk.length) {
      const region = this.events.region
      const n = Math.min(region.length, chunk.length - at)
      region.set(chunk.subarray(at, at + n))
      at += n
      if (!this.events.received(n)) {
        if (at < chunk.length) this.pending = chunk.subarray(at)
        this.socket.pause()
        return
      }
    }
  }

  write(chunks: ReadonlyArray<Uint8Array>, offset: number, total: number): number | Error {
    // Straight to the descriptor only while Node holds nothing queued, or bytes would overtake it.
    const fd = this.socket.writableLength === 0 ? this.descriptor : undefined
    let reached = offset
    if (fd !== undefined) {
      try {
        const rest = remaining(chunks, reached)
        const only = rest.length === 1 ? rest[0] : undefined
        reached += only !== undefined ? Fs.writeSync(fd, only) : Fs.writevSync(fd, rest)
      } catch (cause) {
        const code: unknown = Reflect.get(Object(cause), "code")
        if (code !== "EAGAIN" && code !== "EWOULDBLOCK") return this.writeFailed(cause)
      }
    }
    if (reached === total) return reached
    // A copied piece whose completion says the socket can take more.
    const size = fd === undefined ? PORTABLE_PIECE : PIECE
    const until = Math.min(total, reached + size)
    // Node holds a piece until its callback: the scratch is reused only when nothing is in flight.
    const reusable = this.socket.writableLength === 0
    if (reusable && this.scratch?.length !== size) this.scratch = new Uint8Array(size)
    this.socket.write(gather(chunks, until, reached, reusable ? this.scratch : undefined), this.afterWrite)
    return until
  }

  private readonly afterWrite = (error?: Error | null): void => {
    if (error !== undefined && error !== null) return this.events.writable(error)
    if (this.socket.writableLength === 0) this.events.writable()
  }

  /**
   * A write on the descriptor failed: the connection is broken, as if
   * Node's own write had failed. Node reports that on the next tick, never
   * inside the caller's fiber, and so does this.
   */
  private writeFailed(cause: unknown): Error {
    const error = cause instanceof Error ? cause : new Error(String(cause))
    process.nextTick(() => this.events.failed(error))
    return error
  }

  get flushed(): boolean {
    return this.socket.writableLength === 0
  }

  /**
   * On TLS, a send ends once Node holds its copy below the socket's
   * high-water mark: Node reports a TLS write through only on a later tick,
   * after OpenSSL and the kernel, and waiting for that cost a fiber
   * suspension per send. On plain TCP a send ends when the kernel took its
   * bytes (libdill's `bsend`).
   */
  get taken(): boolean {
    return this.encrypted && this.socket.writableLength <= this.socket.writableHighWaterMark
  }

  end(): void {
    this.socket.end(this.afterWrite)
  }

  get gone(): Error | null | undefined {
    return this.socket.destroyed ? this.socket.errored : undefined
  }

  resumeReading(): void {
    if (!this.copying) {
      // Node restarts an onread socket's reads from `read()` when its handle stopped.
      this.socket.read(0)
      return
    }
    const pending = this.pending
    this.pending = undefined
    if (pending !== undefined) {
      this.deliver(pending)
      if (this.pending !== undefined) return
    }
    this.socket.resume()
  }

  destroy(): void {
    // Bytes that reached the slot are as unread as those still in the
    // kernel: the peer learns they were never read (an RST), as it would
    // if they were still in the kernel's queue. Not once our FIN is on its
    // way: libuv refuses a reset while a shutdown is pending, and Node then
    // reports an error and never closes the socket.
    const socket = this.socket
    const resettable = !this.encrypted && !socket.destroyed && !socket.connecting && !socket.writableEnded &&
      socket.readyState !== "closed"
    if (this.events.unread > 0 && resettable) socket.resetAndDestroy()
    else socket.destroy()
  }

  get tls(): Info | undefined {
    return this.encrypted && this.socket instanceof Tls.TLSSocket ? infoOf(this.socket) : undefined
  }

  get localAddress(): string | undefined {
    return hostPort(this.socket.localAddress, this.socket.localPort)
  }

  get localInet(): NetAddress.InetAddress | undefined {
    return fromNode(this.socket.localAddress, this.socket.localPort)
  }

  get remoteInet(): NetAddress.InetAddress | undefined {
    return fromNode(this.socket.remoteAddress, this.socket.remotePort)
  }
}

/** A connection in `slot` over a new `net.Socket` that reads into the slot through `onread`. */
export const nodeConnection = (
  slot: SlotMemory,
  address: string | undefined,
  releaseSlot: () => void,
  options: Net.SocketConstructorOpts
): Connection<NodeTransport> =>
  new Connection(slot, address, releaseSlot, (events) =>
    new NodeTransport(
      events,
      new Net.Socket({
        ...options,
        allowHalfOpen: true,
        onread: { buffer: () => events.region, callback: (n) => events.received(n) }
      }),
      false
    ))

/** Whether an accepted socket's handle looks like the libuv stream Node's `handle` option takes. */
const movableHandle = (handle: unknown): boolean =>
  typeof handle === "object" && handle !== null && typeof Reflect.get(handle, "readStart") === "function" &&
  typeof Reflect.get(handle, "fd") === "number"

/**
 * A connection in `slot` for a socket `net.Server` accepted. Its handle
 * moves, unread, into a socket built with `onread`, so it reads into the
 * slot like a connected one; where that is not possible (portable mode, a
 * handle that does not look as expected), the accepted socket stays and
 * its chunks are copied into the slot.
 */
export const acceptedConnection = (
  raw: Net.Socket,
  slot: SlotMemory,
  address: string | undefined,
  releaseSlot: () => void
): Connection<NodeTransport> => {
  const handle: unknown = Reflect.get(raw, "_handle")
  if (portable || !movableHandle(handle)) {
    return new Connection(slot, address, releaseSlot, (events) => new NodeTransport(events, raw, true))
  }
  Reflect.set(raw, "_handle", null)
  // The emptied socket now closes nothing but still tells the server it is gone.
  raw.destroy()
  const options: Net.SocketConstructorOpts = { readable: true, writable: true }
  Reflect.set(options, "handle", handle)
  return nodeConnection(slot, address, releaseSlot, options)
}

/** Connects `conn`'s socket to `target`, waiting until `deadline`. */
export const connect = (
  conn: Connection<NodeTransport>,
  target: Net.TcpNetConnectOpts,
  deadline: Deadline
): Effect.Effect<void, TcpError.ConnectError> => {
  const socket = conn.transport.socket
  return awaitEvent<void, TcpError.ConnectError, TcpError.TimedOut>(
    deadline,
    () => TcpError.timedOut("connect", conn.address),
    (resume) => {
      const cleanup = () => {
        socket.off("connect", onConnect)
        socket.off("error", onError)
      }
      const onConnect = () => {
        cleanup()
        resume(Effect.void)
      }
      const onError = (cause: Error) => {
        cleanup()
        const error = TcpError.fromUnknown(cause, "connect", conn.address)
        resume(Effect.fail(TcpError.narrow(error, TcpError.connectTags)))
      }
      // `on`, not `once`: each handler removes both itself (no once-wrapper per listener).
      socket.on("connect", onConnect)
      socket.on("error", onError)
      socket.connect(target)
      return cleanup
    }
  )
}
