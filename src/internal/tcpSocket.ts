/**
 * The library's own socket object: what `TcpSocket`'s methods do around a
 * `Connection`, and how a connection becomes a socket in a scope. Kept out of
 * `TcpSocket.ts` so that `attach` and `connectionOf` are no part of the public
 * API.
 */
import { Duration, Effect, Inspectable, Result } from "effect"
import type { Scope, Sink, Stream } from "effect"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import { kMaxLength } from "node:buffer"
import * as Deadline from "../Deadline.ts"
import * as TcpError from "../TcpError.ts"
import { delimiterOf, isBytes, maxOf, totalOf } from "./bytes.ts"
import type { Connection } from "./core/connection.ts"
import type { Pool } from "./pool.ts"
import { sink, stream } from "./socket.ts"
import { DataSpans } from "../TcpMetrics.ts"
import { leafSpan } from "./span.ts"

/** `TcpSocket.TypeId`: what `isTcpSocket` looks for. */
export const TypeId = "~effect-tcp/TcpSocket" as const

const checkChunks = (
  chunks: unknown,
  syscall: string,
  address: string | undefined
): Result.Result<number, TcpError.InvalidArgument> => {
  const total = totalOf(chunks)
  return total === undefined
    ? Result.fail(TcpError.invalid(syscall, "expected an array of Uint8Array", address))
    : Result.succeed(total)
}

/**
 * The socket object users hold (it has `TcpSocket`'s shape, which `TcpClient`
 * and `TcpListener` check where they hand it out): validation, deadlines and
 * spans around a `Connection`.
 */
export class TcpSocketImpl extends Inspectable.Class implements Pipeable {
  readonly [TypeId] = TypeId
  readonly conn: Connection
  readonly closeTimeout: Duration.Duration
  /** The storage pool the socket's slot came from: where its background close lingers, and an upgrade's too. */
  readonly pool: Pool
  /** Whether data calls record spans (`TcpMetrics.DataSpans` when the socket was made). */
  readonly dataSpans: boolean
  constructor(conn: Connection, closeTimeout: Duration.Duration, pool: Pool, dataSpans: boolean) {
    super()
    this.conn = conn
    this.closeTimeout = closeTimeout
    this.pool = pool
    this.dataSpans = dataSpans
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
  recvUntil(delimiter: Uint8Array | string, options?: Deadline.Options & { readonly max?: number | undefined }) {
    return recvUntilImpl(this, delimiter, options)
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
  get tls() {
    return this.conn.transport.tls
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

const recvUntilImpl = leafSpan("TcpSocket.recvUntil", (
  self: TcpSocketImpl,
  delimiter: Uint8Array | string,
  options?: Deadline.Options & { readonly max?: number | undefined }
) => {
  const address = self.conn.address
  const bytes = delimiterOf(delimiter, self.conn.slotSize)
  if (typeof bytes === "string") return Effect.fail(TcpError.invalid("recv", bytes, address))
  const max = maxOf(options?.max, self.conn.slotSize, kMaxLength)
  if (typeof max === "string") return Effect.fail(TcpError.invalid("recv", max, address))
  return withDeadline(options, "recv", address, (deadline) => self.conn.recvUntil(bytes, max, deadline))
})

const doneImpl = Effect.fn("TcpSocket.done")((self: TcpSocketImpl, options?: Deadline.Options) =>
  withDeadline(options, "done", self.conn.address, (deadline) => self.conn.done(deadline))
)

const closeImpl = Effect.fn("TcpSocket.close")(function*(self: TcpSocketImpl, options?: Deadline.Options) {
  const deadline = options?.deadline === undefined && options?.timeout === undefined
    ? yield* Deadline.after(self.closeTimeout)
    : yield* Deadline.resolve(options, "close", self.conn.address)
  return yield* self.conn.close(deadline)
})

/**
 * The connection behind one of the library's own sockets (for metrics,
 * spans and tests), or `undefined` for anything else.
 */
export const connectionOf = (u: unknown): Connection | undefined => u instanceof TcpSocketImpl ? u.conn : undefined

/**
 * Hands a connection the library made to the current scope and returns the
 * socket users hold: when the scope closes after success the socket is
 * closed gracefully in the background, after failure or interruption it is
 * aborted (`Connection.finalize`).
 */
export const attach = (
  conn: Connection,
  closeTimeout: Duration.Duration,
  pool: Pool
): Effect.Effect<TcpSocketImpl, never, Scope.Scope> =>
  Effect.andThen(
    Effect.addFinalizer((exit) => conn.finalize(exit, closeTimeout, pool)),
    Effect.map(Effect.service(DataSpans), (dataSpans) => new TcpSocketImpl(conn, closeTimeout, pool, dataSpans))
  )
