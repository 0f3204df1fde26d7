/**
 * The workloads through effect-tcp's normal API: `TcpClient.connect`,
 * `socket.send` in 64 KiB chunks, `socket.recv(n)` / `socket.recvInto(buffer)`,
 * every connect inside `Effect.scoped`, the default `TcpNode.layer` (64 KiB
 * slots); lines with `socket.recvUntil("\r\n")` or `TcpMessage.crlf`,
 * requests through `TcpClient.pool`, and the TLS rows through
 * `TcpClient.connect(address, { tls: { ca } })`. Run by `run.ts` as
 * `node client-tcp.ts '<job JSON>'`.
 */
import { Effect, Stream } from "effect"
import * as Fs from "node:fs"
import type { Scope } from "effect"
import { TcpClient, type TcpError, TcpMessage, TcpNode, type TcpSocket } from "../../src/index.ts"
import {
  ACK_BYTES,
  bulkResult,
  clientMain,
  connectsShape,
  encodeLength,
  type Job,
  lineProblem,
  linesResult,
  openTcpHandles,
  pingpongResult,
  requestsResult,
  type Result
} from "./common.ts"
import { connectRate, handlesClosed, idleGrowth, repeat, timed } from "./effect-common.ts"

type Client = TcpClient.TcpClient

const pingpong = (
  socket: TcpSocket.TcpSocket,
  count: number,
  into: boolean,
  samples?: Float64Array
): Effect.Effect<void, TcpError.SendError | TcpError.RecvError> =>
  Effect.gen(function*() {
    const message = new Uint8Array(16).fill(0x61)
    const reply = new Uint8Array(16)
    for (let i = 0; i < count; i++) {
      const t0 = performance.now()
      yield* socket.send(message)
      if (into) yield* socket.recvInto(reply)
      else yield* socket.recv(16)
      if (samples !== undefined) samples[i] = performance.now() - t0
    }
  })

const sendBulk = (socket: TcpSocket.TcpSocket, n: number, chunk: Uint8Array) =>
  Effect.gen(function*() {
    yield* socket.send(encodeLength(n))
    for (let left = n; left > 0; left -= chunk.length) {
      yield* socket.send(left >= chunk.length ? chunk : chunk.subarray(0, left))
    }
    yield* socket.recv(ACK_BYTES)
  })

/** Asks the source for `n` bytes and receives them with `recv(chunk)` or `recvInto(buffer)`. */
const recvBulk = (socket: TcpSocket.TcpSocket, n: number, chunkSize: number, into: Uint8Array | undefined) =>
  Effect.gen(function*() {
    yield* socket.send(encodeLength(n))
    for (let left = n; left > 0; left -= chunkSize) {
      const size = Math.min(left, chunkSize)
      if (into === undefined) yield* socket.recv(size)
      else yield* socket.recvInto(size === into.length ? into : into.subarray(0, size))
    }
  })

/**
 * Asks the lines peer for `count` lines and receives them with one call of
 * `receive` per line, as an application would write it
 * (`socket.recvUntil("\r\n")` or a crlf `MessageSocket`'s `recv()`); checks
 * every line's length, some lines' bytes, and the count.
 */
const recvLines = <E>(socket: TcpSocket.TcpSocket, count: number, receive: () => Effect.Effect<Uint8Array, E>) =>
  Effect.gen(function*() {
    yield* socket.send(encodeLength(count))
    for (let i = 0; i < count; i++) {
      const mismatch = lineProblem(yield* receive(), i, count)
      if (mismatch !== undefined) return yield* Effect.die(new Error(mismatch))
    }
  })

/** As `recvLines`, through the message stream: every line buffered behind the awaited one comes in the same pull. */
const recvLinesStream = (socket: TcpSocket.TcpSocket, lines: TcpMessage.MessageSocket, count: number) =>
  Effect.gen(function*() {
    yield* socket.send(encodeLength(count))
    let i = 0
    let mismatch: string | undefined
    yield* lines.stream.pipe(
      Stream.take(count),
      Stream.runForEachArray((batch) =>
        Effect.sync(() => {
          for (const line of batch) {
            mismatch ??= lineProblem(line, i, count)
            i++
          }
        })
      )
    )
    if (mismatch !== undefined || i !== count) return yield* Effect.die(new Error(mismatch ?? `${i} lines of ${count}`))
  })

/** `count` 16-byte requests and their echoes, each on a socket from `connection` (a connect, or a pool's `get`). */
const requests = <E, R>(count: number, connection: Effect.Effect<TcpSocket.TcpSocket, E, R | Scope.Scope>) => {
  const message = new Uint8Array(16).fill(0x61)
  const one = Effect.scoped(Effect.flatMap(connection, (socket) => Effect.andThen(socket.send(message), socket.recv(16))))
  return repeat(one, count, 1)
}

const connects = (address: string, count: number, inFlight: number, abort: boolean) =>
  repeat(
    abort
      ? TcpClient.connect(address).pipe(Effect.flatMap((socket) => socket.abort), Effect.scoped)
      : TcpClient.connect(address).pipe(Effect.scoped),
    count,
    inFlight
  )

/** A TLS connection to the peer's `port`, trusting the bench's CA (the handshake within the connect). */
const connectTls = (job: Job, port: number | undefined) =>
  job.tls === undefined || port === undefined
    ? Effect.die(new Error("the peer has no TLS listeners"))
    : TcpClient.connect(`${job.host}:${port}`, { tls: { ca: Fs.readFileSync(job.tls.caFile, "utf8") } })

const program = (job: Job): Effect.Effect<Result, TcpError.TcpError, Client> => {
  const { host, params: p } = job
  const at = (port: number) => `${host}:${port}`
  switch (job.workload) {
    case "tls-pingpong":
      return Effect.scoped(Effect.gen(function*() {
        const socket = yield* connectTls(job, job.ports.tlsEcho)
        yield* pingpong(socket, p.tlsPingpongWarmup, false)
        const samples = new Float64Array(p.tlsPingpongCount)
        const measured = yield* timed(job, pingpong(socket, p.tlsPingpongCount, false, samples))
        yield* socket.abort
        return pingpongResult(p.tlsPingpongCount, samples, measured)
      }))
    case "tls-bulk-recv-into":
      return Effect.scoped(Effect.gen(function*() {
        const into = new Uint8Array(p.chunkSize)
        const socket = yield* connectTls(job, job.ports.tlsSource)
        yield* recvBulk(socket, p.bulkWarmupBytes, p.chunkSize, into)
        const measured = yield* timed(job, recvBulk(socket, p.bulkBytes, p.chunkSize, into))
        yield* socket.abort
        return bulkResult(p.bulkBytes, measured)
      }))
    case "workers-1":
    case "workers-2":
      return Effect.die(new Error("the workers rows are driven by load-generator.ts"))
    case "pingpong":
    case "pingpong-into":
    case "pingpong-1core":
      return Effect.scoped(Effect.gen(function*() {
        const into = job.workload === "pingpong-into"
        const socket = yield* TcpClient.connect(at(job.ports.echo))
        yield* pingpong(socket, p.pingpongWarmup, into)
        const samples = new Float64Array(p.pingpongCount)
        const measured = yield* timed(job, pingpong(socket, p.pingpongCount, into, samples))
        yield* socket.abort
        return pingpongResult(p.pingpongCount, samples, measured)
      }))
    case "bulk-send":
      return Effect.scoped(Effect.gen(function*() {
        const socket = yield* TcpClient.connect(at(job.ports.sink))
        const chunk = new Uint8Array(p.chunkSize).fill(0x62)
        yield* sendBulk(socket, p.bulkWarmupBytes, chunk)
        const measured = yield* timed(job, sendBulk(socket, p.bulkBytes, chunk))
        yield* socket.abort
        return bulkResult(p.bulkBytes, measured)
      }))
    case "bulk-recv":
    case "bulk-recv-into":
      return Effect.scoped(Effect.gen(function*() {
        const into = job.workload === "bulk-recv-into" ? new Uint8Array(p.chunkSize) : undefined
        const socket = yield* TcpClient.connect(at(job.ports.source))
        yield* recvBulk(socket, p.bulkWarmupBytes, p.chunkSize, into)
        const measured = yield* timed(job, recvBulk(socket, p.bulkBytes, p.chunkSize, into))
        yield* socket.abort
        return bulkResult(p.bulkBytes, measured)
      }))
    case "connect-seq":
    case "connect-par":
    case "connect-seq-abort":
    case "connect-par-abort": {
      const { inFlight, abort } = connectsShape(job)
      return connectRate(job, (count) => connects(at(job.ports.accept), count, inFlight, abort))
    }
    case "lines":
    case "lines-crlf":
    case "lines-stream":
      return Effect.scoped(Effect.gen(function*() {
        const socket = yield* TcpClient.connect(at(job.ports.lines))
        const lines = yield* TcpMessage.crlf(socket)
        const receive = (count: number) =>
          job.workload === "lines-stream"
            ? recvLinesStream(socket, lines, count)
            : recvLines(socket, count, job.workload === "lines" ? () => socket.recvUntil("\r\n") : () => lines.recv())
        yield* receive(p.linesWarmup)
        const measured = yield* timed(job, receive(p.linesCount))
        yield* socket.abort
        return linesResult(p.linesCount, measured)
      }))
    case "request-connect":
      return Effect.gen(function*() {
        const connect = TcpClient.connect(at(job.ports.echo))
        const baseline = openTcpHandles()
        yield* requests(p.connectsWarmup, connect)
        yield* handlesClosed(baseline)
        const measured = yield* timed(job, Effect.andThen(requests(p.requestConnects, connect), handlesClosed(baseline)))
        return requestsResult(p.requestConnects, measured)
      })
    case "request-pool": {
      // A pool per phase, so the timed one includes its single connect.
      const pooled = (count: number) =>
        Effect.scoped(Effect.gen(function*() {
          const pool = yield* TcpClient.pool(at(job.ports.echo), { size: 1 })
          yield* requests(count, pool.get())
          const stats = yield* pool.stats
          if (stats.created !== 1 || stats.reused !== count - 1) {
            return yield* Effect.die(new Error(`pool did not reuse its connection: ${JSON.stringify(stats)}`))
          }
        }))
      return Effect.gen(function*() {
        yield* pooled(p.requestsWarmup)
        return requestsResult(p.requests, yield* timed(job, pooled(p.requests)))
      })
    }
    case "idle":
      // Warms the code paths (and the pool's first slots), then measures.
      return idleGrowth(job, TcpClient.connect(at(job.ports.idle)))
  }
}

clientMain((job) => Effect.runPromise(program(job).pipe(Effect.provide(TcpNode.layer))))
