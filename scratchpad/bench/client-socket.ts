/**
 * The workloads through Effect's own socket API, used as its docs show:
 * `NodeSocket.makeNet(options)` from `@effect/platform-node`, the connection
 * opened by acquiring `socket.reader` in a scope, bytes read with
 * `reader.pull` (non-empty batches of chunks) and written with the scoped
 * `socket.writer`'s `write`. (This Effect 4 release has no `socket.run`; the
 * reader/writer pair is its replacement.) Lines are the reader's batches
 * through `Stream.decodeText` and `Stream.splitLines`. Run by `run.ts` as
 * `node client-socket.ts '<job JSON>'`.
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { Effect, Stream } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import type { Scope } from "effect"
import * as Socket from "effect/socket/Socket"
import {
  ACK_BYTES,
  bulkResult,
  clientMain,
  connectsShape,
  encodeLength,
  type Job,
  lineProblem,
  linesResult,
  pingpongResult,
  type Result
} from "./common.ts"
import { connectRate, idleGrowth, repeat, timed } from "./effect-common.ts"

interface Conn {
  readonly pull: Socket.Reader["pull"]
  readonly write: Socket.Writer["write"]
}

const open = (host: string, port: number): Effect.Effect<Conn, Socket.SocketError, Scope.Scope> =>
  Effect.gen(function*() {
    const socket = yield* NodeSocket.makeNet({ host, port, noDelay: true })
    const reader = yield* socket.reader
    const writer = yield* socket.writer
    return { pull: reader.pull, write: writer.write }
  })

/** Pulls until `n` bytes have arrived (the peer never sends more than asked). */
const readBytes = (conn: Conn, n: number): Effect.Effect<void, Socket.SocketError> =>
  Effect.gen(function*() {
    let left = n
    while (left > 0) {
      const chunks = yield* conn.pull
      for (const chunk of chunks) left -= typeof chunk === "string" ? Buffer.byteLength(chunk) : chunk.length
    }
  })

const pingpong = (conn: Conn, count: number, samples?: Float64Array) =>
  Effect.gen(function*() {
    const message = new Uint8Array(16).fill(0x61)
    for (let i = 0; i < count; i++) {
      const t0 = performance.now()
      yield* conn.write(message)
      yield* readBytes(conn, 16)
      if (samples !== undefined) samples[i] = performance.now() - t0
    }
  })

const sendBulk = (conn: Conn, n: number, chunk: Uint8Array) =>
  Effect.gen(function*() {
    yield* conn.write(encodeLength(n))
    for (let left = n; left > 0; left -= chunk.length) {
      yield* conn.write(left >= chunk.length ? chunk : chunk.subarray(0, left))
    }
    yield* readBytes(conn, ACK_BYTES)
  })

const recvBulk = (conn: Conn, n: number) =>
  Effect.andThen(conn.write(encodeLength(n)), readBytes(conn, n))

interface LinesConn {
  readonly pull: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError>
  readonly write: Socket.Writer["write"]
}

/** A connection whose reader gives bytes only (`Socket.readerBytes`, what `Socket.toStream` reads). */
const openBytes = (host: string, port: number): Effect.Effect<LinesConn, Socket.SocketError, Scope.Scope> =>
  Effect.gen(function*() {
    const socket = yield* NodeSocket.makeNet({ host, port, noDelay: true })
    const pull = yield* Socket.readerBytes(socket)
    const writer = yield* socket.writer
    return { pull, write: writer.write }
  })

/**
 * Asks the lines peer for `count` lines and reads them as a `Stream` of the
 * reader's batches, decoded and split into lines, folded into a count that
 * checks every line's length and some lines' text. The stream stops after
 * `count` lines: a CRLF split between two batches could leave its LF for a
 * later stream, so each request gets a connection of its own.
 */
const recvLines = (conn: LinesConn, count: number) =>
  Effect.gen(function*() {
    yield* conn.write(encodeLength(count))
    const checked = yield* Stream.fromPull(Effect.succeed(conn.pull)).pipe(
      Stream.decodeText,
      Stream.splitLines,
      Stream.take(count),
      Stream.runFold(() => ({ received: 0, mismatch: undefined as string | undefined }), (state, line: string) => {
        const i = state.received
        if (state.mismatch === undefined) state.mismatch = lineProblem(line, i, count)
        state.received = i + 1
        return state
      })
    )
    const mismatch = checked.mismatch ?? (checked.received === count ? undefined : `${checked.received} lines, expected ${count}`)
    if (mismatch !== undefined) return yield* Effect.fail(new Error(mismatch))
  })

/** One connect (acquiring the reader opens it) and close (the scope's finalizers). */
const connects = (host: string, port: number, count: number, inFlight: number) =>
  repeat(
    Effect.scoped(Effect.flatMap(NodeSocket.makeNet({ host, port, noDelay: true }), (socket) => socket.reader)),
    count,
    inFlight
  )

const program = (job: Job): Effect.Effect<Result, Socket.SocketError | Error> => {
  const { host, params: p } = job
  switch (job.workload) {
    case "pingpong":
    case "pingpong-into":
    case "pingpong-1core":
      return Effect.scoped(Effect.gen(function*() {
        const conn = yield* open(host, job.ports.echo)
        yield* pingpong(conn, p.pingpongWarmup)
        const samples = new Float64Array(p.pingpongCount)
        return pingpongResult(p.pingpongCount, samples, yield* timed(job, pingpong(conn, p.pingpongCount, samples)))
      }))
    case "bulk-send":
      return Effect.scoped(Effect.gen(function*() {
        const conn = yield* open(host, job.ports.sink)
        const chunk = new Uint8Array(p.chunkSize).fill(0x62)
        yield* sendBulk(conn, p.bulkWarmupBytes, chunk)
        return bulkResult(p.bulkBytes, yield* timed(job, sendBulk(conn, p.bulkBytes, chunk)))
      }))
    case "bulk-recv":
      return Effect.scoped(Effect.gen(function*() {
        const conn = yield* open(host, job.ports.source)
        yield* recvBulk(conn, p.bulkWarmupBytes)
        return bulkResult(p.bulkBytes, yield* timed(job, recvBulk(conn, p.bulkBytes)))
      }))
    case "lines":
      return Effect.gen(function*() {
        yield* Effect.scoped(Effect.flatMap(openBytes(host, job.ports.lines), (conn) => recvLines(conn, p.linesWarmup)))
        return yield* Effect.scoped(Effect.gen(function*() {
          const conn = yield* openBytes(host, job.ports.lines)
          return linesResult(p.linesCount, yield* timed(job, recvLines(conn, p.linesCount)))
        }))
      })
    case "lines-crlf":
    case "lines-stream":
    case "request-connect":
    case "request-pool":
    case "bulk-recv-into":
    case "connect-seq-abort":
    case "connect-par-abort":
      return Effect.fail(new Error(`effect/socket has no ${job.workload} API`))
    case "tls-pingpong":
    case "tls-bulk-recv-into":
    case "workers-1":
    case "workers-2":
      // NodeSocket has no TLS client; the workers rows measure servers.
      return Effect.fail(new Error(`the bench does not run ${job.workload} through effect/socket`))
    case "connect-seq":
    case "connect-par": {
      const { inFlight } = connectsShape(job)
      return connectRate(job, (count) => connects(host, job.ports.accept, count, inFlight))
    }
    case "idle":
      return idleGrowth(job, open(host, job.ports.idle))
  }
}

clientMain((job) => Effect.runPromise(program(job)))
