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
import { Duration, Effect, Function as Fn, Inspectable, Predicate, Result, Sink, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import { socketReader, socketWriter } from "./internal/socket.ts"
import type { Scope } from "effect"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import type { NetAddress } from "effect/net"
import { kMaxLength } from "node:buffer"
import * as Deadline from "./Deadline.ts"
import { leafSpan } from "./internal/span.ts"
import type { Connection } from "./internal/core/connection.ts"
import type { Pool } from "./internal/pool.ts"
import * as TcpError from "./TcpError.ts"

/**
 * @since 0.1.0
 */
export const TypeId: "~effect-tcp/TcpSocket" = "~effect-tcp/TcpSocket"

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

const isBytes = (u: unknown): u is Uint8Array => u instanceof Uint8Array

const checkChunks = (
  chunks: unknown,
  syscall: string,
  address: string | undefined
): Result.Result<number, TcpError.InvalidArgument> => {
  if (!Array.isArray(chunks)) return Result.fail(TcpError.invalid(syscall, "expected an array of Uint8Array", address))
  let total = 0
  for (const chunk of chunks) {
    if (!isBytes(chunk)) return Result.fail(TcpError.invalid(syscall, "expected an array of Uint8Array", address))
    total += chunk.length
  }
  return Result.succeed(total)
}

/** The socket object users hold: validation, deadlines and spans around a `Connection`. */
class TcpSocketImpl extends Inspectable.Class implements TcpSocket {
  readonly [TypeId] = TypeId
  readonly conn: Connection
  readonly closeTimeout: Duration.Duration
  constructor(conn: Connection, closeTimeout: Duration.Duration) {
    super()
    this.conn = conn
    this.closeTimeout = closeTimeout
  }
  send(bytes: Uint8Array, options?: Deadline.Options) {
    return sendImpl(this, bytes, options)
  }
  sendv(chunks: ReadonlyArray<Uint8Array>, options?: Deadline.Options) {
    return sendvImpl(this, chunks, options)
  }
  recv(n: number, options?: Deadline.Options) {
    return recvImpl(this, n, options)
  }
  recvInto(buffer: Uint8Array, options?: Deadline.Options) {
    return recvIntoImpl(this, buffer, options)
  }
  recvv(buffers: ReadonlyArray<Uint8Array>, options?: Deadline.Options) {
    return recvvImpl(this, buffers, options)
  }
  recvSome(max: number, options?: Deadline.Options) {
    return recvSomeImpl(this, max, options)
  }
  done(options?: Deadline.Options) {
    return doneImpl(this, options)
  }
  close(options?: Deadline.Options) {
    return closeImpl(this, options)
  }
  get abort() {
    return this.conn.abort
  }
  get stream(): Stream.Stream<Uint8Array, Exclude<TcpError.RecvError, TcpError.PeerClosed>> {
    return stream(this)
  }
  get sink(): Sink.Sink<void, Uint8Array, never, TcpError.SendError> {
    return sink(this)
  }
  get localAddress() {
    return this.conn.transport.localInet
  }
  get remoteAddress() {
    return this.conn.transport.remoteInet
  }
  toJSON() {
    return { _id: "TcpSocket", ...this.conn.summary() }
  }
  pipe() {
    return pipeArguments(this, arguments)
  }
}

/**
 * Runs `f` with the call's deadline. The common cases (no options, or only
 * an absolute deadline) need no clock and stay synchronous.
 */
const withDeadline = <A, E>(
  options: Deadline.Options | undefined,
  syscall: string,
  address: string | undefined,
  f: (deadline: Deadline.Deadline) => Effect.Effect<A, E>
): Effect.Effect<A, E | TcpError.InvalidArgument> =>
  options === undefined
    ? f(Deadline.never)
    : Effect.flatMap(Deadline.resolve(options, syscall, address), f)

const transmit = (
  self: TcpSocketImpl,
  chunks: ReadonlyArray<Uint8Array>,
  total: number,
  options: Deadline.Options | undefined
): Effect.Effect<void, TcpError.SendError> => {
  const conn = self.conn
  return withDeadline(options, "send", conn.address, (deadline) => conn.send(chunks, total, deadline))
}

const receive = (
  self: TcpSocketImpl,
  targets: ReadonlyArray<Uint8Array>,
  total: number,
  options: Deadline.Options | undefined
): Effect.Effect<void, TcpError.RecvError> => {
  const conn = self.conn
  return withDeadline(options, "recv", conn.address, (deadline) => conn.recv(targets, total, deadline))
}

/**
 * Memory for `recv(n)`: small results are zeroed (cheap), large ones skip
 * the zeroing. Neither shares Node's buffer pool, so `result.buffer` never
 * exposes other bytes.
 */
const allocate = (n: number): Uint8Array | undefined => {
  if (n < 4096) return new Uint8Array(n)
  try {
    const slow = Buffer.allocUnsafeSlow(n)
    return new Uint8Array(slow.buffer, slow.byteOffset, n)
  } catch {
    // A length Node allows but memory cannot hold: the caller's error, not a defect.
    return undefined
  }
}

// The library's own sockets: validation, deadlines and spans around a Connection.

const sendImpl = leafSpan("TcpSocket.send", (self: TcpSocketImpl, bytes: Uint8Array, options?: Deadline.Options) =>
  isBytes(bytes)
    ? transmit(self, [bytes], bytes.length, options)
    : Effect.fail(TcpError.invalid("send", "expected a Uint8Array", self.conn.address))
)

const sendvImpl = leafSpan("TcpSocket.sendv",
  (self: TcpSocketImpl, chunks: ReadonlyArray<Uint8Array>, options?: Deadline.Options) => {
    const checked = checkChunks(chunks, "send", self.conn.address)
    return Result.isFailure(checked) ? Effect.fail(checked.failure) : transmit(self, chunks, checked.success, options)
  }
)

const recvImpl = leafSpan("TcpSocket.recv", (self: TcpSocketImpl, n: number, options?: Deadline.Options) => {
  if (!Number.isSafeInteger(n) || n < 0 || n > kMaxLength) {
    return Effect.fail(TcpError.invalid("recv", `length must be an integer in 0..${kMaxLength}`, self.conn.address))
  }
  const bytes = allocate(n)
  return bytes === undefined
    ? Effect.fail(TcpError.invalid("recv", `cannot allocate ${n} bytes`, self.conn.address))
    : Effect.as(receive(self, [bytes], n, options), bytes)
})

const recvIntoImpl = leafSpan("TcpSocket.recvInto",
  (self: TcpSocketImpl, buffer: Uint8Array, options?: Deadline.Options) =>
    isBytes(buffer)
      ? receive(self, [buffer], buffer.length, options)
      : Effect.fail(TcpError.invalid("recv", "expected a Uint8Array", self.conn.address))
)

const recvvImpl = leafSpan("TcpSocket.recvv",
  (self: TcpSocketImpl, buffers: ReadonlyArray<Uint8Array>, options?: Deadline.Options) => {
    const total = checkChunks(buffers, "recv", self.conn.address)
    return Result.isFailure(total) ? Effect.fail(total.failure) : receive(self, buffers, total.success, options)
  }
)

const recvSomeImpl = leafSpan("TcpSocket.recvSome", (self: TcpSocketImpl, max: number, options?: Deadline.Options) =>
  Number.isSafeInteger(max) && max >= 1
    ? withDeadline(options, "recv", self.conn.address, (deadline) => self.conn.recvSome(max, deadline))
    : Effect.fail(TcpError.invalid("recv", "max must be a positive integer", self.conn.address))
)

const doneImpl = Effect.fn("TcpSocket.done")((self: TcpSocketImpl, options?: Deadline.Options) =>
  withDeadline(options, "done", self.conn.address, (deadline) => self.conn.done(deadline))
)

const closeImpl = Effect.fn("TcpSocket.close")(function*(self: TcpSocketImpl, options?: Deadline.Options) {
  const deadline = options?.deadline === undefined && options?.timeout === undefined
    ? yield* Deadline.after(self.closeTimeout)
    : yield* Deadline.resolve(options, "close", self.conn.address)
  return yield* self.conn.close(deadline)
})

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
): Stream.Stream<Uint8Array, Exclude<TcpError.RecvError, TcpError.PeerClosed>> => {
  const chunkSize = options?.chunkSize ?? 64 * 1024
  return Stream.unfold(undefined, () =>
    self.recvSome(chunkSize).pipe(
      Effect.map((bytes) => [bytes, undefined] as const),
      Effect.catchTag("PeerClosed", () => Effect.succeed(undefined))
    ))
}

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
  Sink.forEachArray((chunks) => self.sendv(chunks))

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
    reader: socketReader(self),
    writer: Effect.acquireRelease(Effect.succeed(socketWriter(self)), () => Effect.ignore(self.done()))
  })


/**
 * The connection behind one of the library's own sockets, for metrics.
 *
 * @internal
 */
export const connectionOf = (self: TcpSocket): Connection | undefined =>
  self instanceof TcpSocketImpl ? self.conn : undefined

/**
 * Hands a connection the library made to the current scope and returns the
 * socket users hold; used by `TcpClient` and `TcpListener`.
 *
 * @internal
 */
export const attach = (
  conn: Connection,
  closeTimeout: Duration.Duration,
  pool: Pool
): Effect.Effect<TcpSocket, never, Scope.Scope> =>
  Effect.as(
    Effect.addFinalizer((exit) => conn.finalize(exit, closeTimeout, pool)),
    new TcpSocketImpl(conn, closeTimeout)
  )
