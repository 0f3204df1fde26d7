/**
 * A connected TCP socket with libdill's semantics: exact-length receives,
 * sends that complete when every byte is accepted, half-close, graceful
 * close and abort, each blocking call bounded by a deadline.
 *
 * Sockets come from `TcpClient.connect` or `listener.accept` and live in a
 * `Scope`: when it closes after success the socket is closed gracefully in
 * the background; after failure or interruption it is aborted.
 *
 * @since 0.1.0
 */
import { Effect, Function as Fn, Predicate } from "effect"
import type { Inspectable, Sink, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import type { Pipeable } from "effect/Pipeable"
import type { NetAddress } from "effect/net"
import type * as Deadline from "./Deadline.ts"
import * as internalSocket from "./internal/socket.ts"
import * as internal from "./internal/tcpSocket.ts"
import type * as TcpError from "./TcpError.ts"
import type { Info as TlsInfo } from "./internal/tlsTypes.ts"

/**
 * @since 0.1.0
 */
export const TypeId: "~effect-tcp/TcpSocket" = internal.TypeId

/**
 * A connected socket. Every method returns an `Effect` and never throws;
 * concurrent receives run one after another in call order, and so do
 * concurrent sends, while a send and a receive run at the same time.
 *
 * Printed (`util.inspect`, `JSON.stringify`, `String`, `Effect.log`) a
 * socket shows its addresses, state and sizes, never bytes: its storage
 * slot may hold what an earlier connection received.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient } from "effect-tcp"
 * const ping = Effect.gen(function*() {
 *   const socket = yield* TcpClient.connect("127.0.0.1:6379", { timeout: "1 second" })
 *   yield* socket.send(new TextEncoder().encode("PING\r\n"))
 *   const reply = yield* socket.recv(7, { timeout: "1 second" })
 *   yield* socket.close()
 *   return new TextDecoder().decode(reply)
 * }).pipe(Effect.scoped)
 * ```
 * @since 0.1.0
 */
export interface TcpSocket extends Pipeable, Inspectable.Inspectable {
  readonly [TypeId]: typeof TypeId
  /**
   * libdill's `bsend`: completes once every byte is accepted by the kernel,
   * waiting within the deadline when it cannot take them at once. The caller
   * may reuse `bytes` as soon as it returns, however it ended: what the kernel
   * has not taken is never read from them afterwards. A send that times out
   * or is interrupted may have sent part of its bytes: later sends then fail
   * with `ConnReset`, receiving still works.
   */
  send(bytes: Uint8Array, options?: Deadline.Options): Effect.Effect<void, TcpError.SendError>
  /** libdill's `bsendl`: like `send` for several chunks, written in one batch. */
  sendv(chunks: ReadonlyArray<Uint8Array>, options?: Deadline.Options): Effect.Effect<void, TcpError.SendError>
  /**
   * libdill's `brecv`: exactly `n` bytes, or an error. `PeerClosed` carries
   * the bytes that did arrive. A receive of up to the storage slot's size
   * that times out or is interrupted consumes nothing; a larger one that stops
   * halfway leaves the inbound direction unusable (`ConnReset`).
   */
  recv(n: number, options?: Deadline.Options): Effect.Effect<Uint8Array, TcpError.RecvError>
  /** Fills `buffer` exactly, straight from the socket's storage slot. */
  recvInto(buffer: Uint8Array, options?: Deadline.Options): Effect.Effect<void, TcpError.RecvError>
  /** libdill's `brecvl`: fills each buffer in order, exactly. */
  recvv(buffers: ReadonlyArray<Uint8Array>, options?: Deadline.Options): Effect.Effect<void, TcpError.RecvError>
  /**
   * Whatever has arrived, between 1 and `max` bytes, waiting within the
   * deadline for the first; `PeerClosed` (with no bytes) once the peer
   * finished. libdill has no such call: it is for streams and adapters,
   * where framing is someone else's job. Prefer the exact receives.
   */
  recvSome(max: number, options?: Deadline.Options): Effect.Effect<Uint8Array, TcpError.RecvError>
  /**
   * The bytes before the next `delimiter` (bytes, or a string sent as
   * UTF-8); the delimiter is consumed and not returned. The search runs in
   * the storage slot, in place. A frame longer than `max` (default: the
   * slot's size) fails `MessageTooLarge`; the peer's FIN first is
   * `PeerClosed` with the bytes that came. Retry-safe as `recv` is: a frame
   * that fits in the slot and times out or is interrupted consumes nothing.
   */
  recvUntil(delimiter: Uint8Array | string, options?: RecvUntilOptions): Effect.Effect<Uint8Array, TcpError.RecvUntilError>
  /**
   * libdill's `tcp_done`: sends FIN after the bytes already sent, and keeps
   * receiving. Sends afterwards fail with `BrokenPipe`.
   */
  done(options?: Deadline.Options): Effect.Effect<void, TcpError.SendError>
  /**
   * libdill's `tcp_close`: FIN, then read and discard inbound bytes until
   * the peer's FIN, within the deadline (default: the socket's
   * `closeTimeout`, 1 second). If that fails the socket is aborted anyway
   * and the error returned. Calls afterwards fail with `Closed`.
   */
  close(options?: Deadline.Options): Effect.Effect<void, TcpError.CloseError>
  /** The inbound bytes as a stream of chunks, ending at the peer's FIN (see `TcpSocket.stream`). */
  readonly stream: Stream.Stream<Uint8Array, Exclude<TcpError.RecvError, TcpError.PeerClosed>>
  /** A sink sending every chunk it is given (see `TcpSocket.sink`). */
  readonly sink: Sink.Sink<void, Uint8Array, never, TcpError.SendError>
  /** libdill's `hclose`: immediate close (RST if data is pending). Always succeeds. */
  readonly abort: Effect.Effect<void>
  /** This end's address. */
  readonly localAddress: NetAddress.InetAddress | undefined
  /** The peer's address. */
  readonly remoteAddress: NetAddress.InetAddress | undefined
  /** The TLS session (protocol, cipher, ALPN, the peer's certificate), or `undefined` for plaintext. */
  readonly tls: TlsInfo | undefined
}

/**
 * Whether a value is a `TcpSocket`.
 *
 * @example
 * ```ts
 * import { TcpSocket } from "effect-tcp"
 * TcpSocket.isTcpSocket({}) // false
 * ```
 * @since 0.1.0
 */
export const isTcpSocket = (u: unknown): u is TcpSocket => Predicate.hasProperty(u, TypeId)

const isSocketFirst = (args: IArguments) => isTcpSocket(args[0])

/**
 * Sends all of `bytes` (see `TcpSocket.send`), data-first or data-last.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpSocket.send(socket, new Uint8Array([1, 2, 3]), { timeout: "1 second" })
 * ```
 * @since 0.1.0
 */
export const send: {
  (bytes: Uint8Array, options?: Deadline.Options): (self: TcpSocket) => Effect.Effect<void, TcpError.SendError>
  (self: TcpSocket, bytes: Uint8Array, options?: Deadline.Options): Effect.Effect<void, TcpError.SendError>
} = Fn.dual(
  isSocketFirst,
  (self: TcpSocket, bytes: Uint8Array, options?: Deadline.Options) => self.send(bytes, options)
)

/**
 * Sends every chunk in order, in one batch (see `TcpSocket.sendv`).
 *
 * @example
 * ```ts
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpSocket.sendv(socket, [new Uint8Array([1]), new Uint8Array([2, 3])])
 * ```
 * @since 0.1.0
 */
export const sendv: {
  (
    chunks: ReadonlyArray<Uint8Array>,
    options?: Deadline.Options
  ): (self: TcpSocket) => Effect.Effect<void, TcpError.SendError>
  (
    self: TcpSocket,
    chunks: ReadonlyArray<Uint8Array>,
    options?: Deadline.Options
  ): Effect.Effect<void, TcpError.SendError>
} = Fn.dual(
  isSocketFirst,
  (self: TcpSocket, chunks: ReadonlyArray<Uint8Array>, options?: Deadline.Options) => self.sendv(chunks, options)
)

/**
 * Receives exactly `n` bytes (see `TcpSocket.recv`).
 *
 * @example
 * ```ts
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpSocket.recv(socket, 7, { timeout: "1 second" })
 * ```
 * @since 0.1.0
 */
export const recv: {
  (n: number, options?: Deadline.Options): (self: TcpSocket) => Effect.Effect<Uint8Array, TcpError.RecvError>
  (self: TcpSocket, n: number, options?: Deadline.Options): Effect.Effect<Uint8Array, TcpError.RecvError>
} = Fn.dual(
  isSocketFirst,
  (self: TcpSocket, n: number, options?: Deadline.Options) => self.recv(n, options)
)

/**
 * Fills `buffer` exactly (see `TcpSocket.recvInto`).
 *
 * @example
 * ```ts
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * const header = new Uint8Array(8)
 * TcpSocket.recvInto(socket, header)
 * ```
 * @since 0.1.0
 */
export const recvInto: {
  (buffer: Uint8Array, options?: Deadline.Options): (self: TcpSocket) => Effect.Effect<void, TcpError.RecvError>
  (self: TcpSocket, buffer: Uint8Array, options?: Deadline.Options): Effect.Effect<void, TcpError.RecvError>
} = Fn.dual(
  isSocketFirst,
  (self: TcpSocket, buffer: Uint8Array, options?: Deadline.Options) => self.recvInto(buffer, options)
)

/**
 * Fills each buffer in order, exactly (see `TcpSocket.recvv`).
 *
 * @example
 * ```ts
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpSocket.recvv(socket, [new Uint8Array(4), new Uint8Array(60)])
 * ```
 * @since 0.1.0
 */
export const recvv: {
  (
    buffers: ReadonlyArray<Uint8Array>,
    options?: Deadline.Options
  ): (self: TcpSocket) => Effect.Effect<void, TcpError.RecvError>
  (
    self: TcpSocket,
    buffers: ReadonlyArray<Uint8Array>,
    options?: Deadline.Options
  ): Effect.Effect<void, TcpError.RecvError>
} = Fn.dual(
  isSocketFirst,
  (self: TcpSocket, buffers: ReadonlyArray<Uint8Array>, options?: Deadline.Options) => self.recvv(buffers, options)
)

/**
 * Half-closes the socket (see `TcpSocket.done`).
 *
 * @example
 * ```ts
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpSocket.done(socket)
 * ```
 * @since 0.1.0
 */
export const done: {
  (options?: Deadline.Options): (self: TcpSocket) => Effect.Effect<void, TcpError.SendError>
  (self: TcpSocket, options?: Deadline.Options): Effect.Effect<void, TcpError.SendError>
} = Fn.dual(
  isSocketFirst,
  (self: TcpSocket, options?: Deadline.Options) => self.done(options)
)

/**
 * Closes the socket gracefully (see `TcpSocket.close`).
 *
 * @example
 * ```ts
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpSocket.close(socket, { timeout: "2 seconds" })
 * ```
 * @since 0.1.0
 */
export const close: {
  (options?: Deadline.Options): (self: TcpSocket) => Effect.Effect<void, TcpError.CloseError>
  (self: TcpSocket, options?: Deadline.Options): Effect.Effect<void, TcpError.CloseError>
} = Fn.dual(
  isSocketFirst,
  (self: TcpSocket, options?: Deadline.Options) => self.close(options)
)

/**
 * Aborts the socket at once (see `TcpSocket.abort`).
 *
 * @example
 * ```ts
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpSocket.abort(socket)
 * ```
 * @since 0.1.0
 */
export const abort = (self: TcpSocket): Effect.Effect<void> => self.abort

/**
 * Options for `recvUntil`: the deadline, and the longest frame accepted
 * (`max`, default: the storage slot's size).
 *
 * @example
 * ```ts
 * import type { TcpSocket } from "effect-tcp"
 * const line: TcpSocket.RecvUntilOptions = { max: 8 * 1024, timeout: "5 seconds" }
 * ```
 * @since 0.1.0
 */
export interface RecvUntilOptions extends Deadline.Options {
  readonly max?: number | undefined
}

/**
 * The bytes before the next `delimiter` (see `TcpSocket.recvUntil`).
 *
 * @example
 * ```ts
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpSocket.recvUntil(socket, "\r\n\r\n", { max: 16 * 1024 }) // an HTTP head
 * ```
 * @since 0.1.0
 */
export const recvUntil: {
  (
    delimiter: Uint8Array | string,
    options?: RecvUntilOptions
  ): (self: TcpSocket) => Effect.Effect<Uint8Array, TcpError.RecvUntilError>
  (
    self: TcpSocket,
    delimiter: Uint8Array | string,
    options?: RecvUntilOptions
  ): Effect.Effect<Uint8Array, TcpError.RecvUntilError>
} = Fn.dual(
  isSocketFirst,
  (self: TcpSocket, delimiter: Uint8Array | string, options?: RecvUntilOptions) => self.recvUntil(delimiter, options)
)

/**
 * Receives what has arrived, up to `max` bytes (see `TcpSocket.recvSome`).
 *
 * @example
 * ```ts
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpSocket.recvSome(socket, 64 * 1024)
 * ```
 * @since 0.1.0
 */
export const recvSome: {
  (max: number, options?: Deadline.Options): (self: TcpSocket) => Effect.Effect<Uint8Array, TcpError.RecvError>
  (self: TcpSocket, max: number, options?: Deadline.Options): Effect.Effect<Uint8Array, TcpError.RecvError>
} = Fn.dual(
  isSocketFirst,
  (self: TcpSocket, max: number, options?: Deadline.Options) => self.recvSome(max, options)
)

/**
 * The socket's inbound bytes as a stream of chunks (each at most
 * `chunkSize`, default 64 KiB), ending at the peer's FIN. Pulling is the
 * backpressure: nothing is read ahead beyond the socket's storage slot.
 *
 * @example
 * ```ts
 * import { Stream } from "effect"
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * const lines = TcpSocket.stream(socket).pipe(Stream.decodeText, Stream.splitLines)
 * ```
 * @since 0.1.0
 */
export const stream = (
  self: TcpSocket,
  options?: { readonly chunkSize?: number | undefined }
): Stream.Stream<Uint8Array, Exclude<TcpError.RecvError, TcpError.PeerClosed>> => internalSocket.stream(self, options)

/**
 * A sink that sends every chunk it is given, in order, with `send`'s
 * backpressure (each chunk is in the kernel before the next is taken).
 *
 * @example
 * ```ts
 * import { Stream } from "effect"
 * import { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * Stream.make(new Uint8Array([1, 2]), new Uint8Array([3])).pipe(Stream.run(TcpSocket.sink(socket)))
 * ```
 * @since 0.1.0
 */
export const sink = (self: TcpSocket): Sink.Sink<void, Uint8Array, never, TcpError.SendError> =>
  internalSocket.sink(self)

/**
 * Effect's own `Socket` over this socket, so code written for
 * `effect/socket` (RPC, protocols) runs over effect-tcp. The reader pulls
 * what has arrived and fails with `SocketCloseError` 1000 at the peer's FIN;
 * the writer sends with backpressure, a `CloseEvent` (or releasing the
 * writer's scope) half-closes the socket (FIN), and a `CloseEvent` with a
 * code above 1000 aborts it. Errors carry the tagged `TcpError` as their
 * cause. The socket itself still lives in the scope it came from: closing
 * the scope a reader was acquired in fails that reader's pulls, the one
 * waiting then included, with `SocketCloseError` 1006 (effect/socket's
 * contract, which `Socket.toChannel` relies on to end a run), and leaves
 * the socket open; a reader acquired later reads on from the next byte.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Socket } from "effect/socket"
 * import { TcpClient, TcpSocket } from "effect-tcp"
 * const program = Effect.gen(function*() {
 *   const socket = TcpSocket.toSocket(yield* TcpClient.connect("127.0.0.1:7000"))
 *   yield* Socket.toStream(socket).pipe(Stream.runForEach(Effect.log))
 * })
 * ```
 * @since 0.1.0
 */
export const toSocket = (self: TcpSocket): Socket.Socket =>
  Socket.make({
    reader: internalSocket.socketReader(self),
    writer: Effect.acquireRelease(Effect.succeed(internalSocket.socketWriter(self)), () => Effect.ignore(self.done()))
  })
