import type { NetAddress } from "effect/net"
import type { Info } from "../tlsTypes.ts"

/**
 * What a connection's rules (`core/connection.ts`) need from the way bytes
 * travel, and what that way tells them back. The Node transport moves them
 * through a kernel socket; the in-memory one through a pipe to a peer.
 * A transport knows nothing of receives, sends, deadlines or fibers.
 */
export interface Transport {
  /**
   * Moves bytes of `chunks` from `offset` on towards the peer, as far as it
   * can at once. Returns the offset reached (what the transport took,
   * possibly as a copy still in flight), or the error that broke the
   * connection. While anything it took is still in flight (`flushed` is
   * false) it calls the connection's `writable` once all of it is through.
   */
  write(chunks: ReadonlyArray<Uint8Array>, offset: number, total: number): number | Error
  /** Whether nothing handed to `write` or `end` is still in flight. */
  readonly flushed: boolean
  /**
   * Whether what `write` took, still in flight, is the transport's own copy
   * and it can take more now, so a send may end without waiting for it (a
   * TLS socket, whose bytes pass through OpenSSL before any kernel sees
   * them). `writable` still follows once all of it is through.
   */
  readonly taken: boolean
  /** Sends the FIN after what was written; `writable` follows once it is through (if not `flushed` at once). */
  end(): void
  /** Why no more bytes can be written, once the connection is gone: its error, or `null` for none. */
  readonly gone: Error | null | undefined
  /** Reads again after the connection paused reading (`received` returned false). */
  resumeReading(): void
  /** Closes at once: an RST if unread bytes are pending. `closed` follows once the transport let go of the slot. */
  destroy(): void
  /**
   * Another connection takes the transport over (an upgrade to TLS): tell
   * this one's events nothing more. Returns bytes the transport received
   * and had not yet moved into the slot, which come after the slot's.
   */
  release(): Uint8Array | undefined
  /** The TLS session, for a transport that encrypts. */
  readonly tls: Info | undefined
  /** `host:port` of our end, where known, for printing. */
  readonly localAddress: string | undefined
  /** Our end and the peer's, where known. */
  readonly localInet: NetAddress.InetAddress | undefined
  readonly remoteInet: NetAddress.InetAddress | undefined
}

/** What a transport tells the connection it serves. */
export interface TransportEvents {
  /** The memory the next read goes into. */
  readonly region: Uint8Array
  /** Bytes received and not yet consumed: a transport that closes with some unread sends an RST. */
  readonly unread: number
  /** `n` bytes landed in `region`. Returns whether to go on reading. */
  received(n: number): boolean
  /** What was written (or the FIN) is through, or failed. */
  writable(error?: Error | null): void
  /** The peer's FIN. */
  ended(): void
  /** The connection broke. */
  failed(error: Error): void
  /** The transport let go of the connection and its slot. */
  closed(): void
}
