/**
 * The workloads through Effect's own socket API, used as its docs show:
 * `NodeSocket.makeNet(options)` from `@effect/platform-node`, the connection
 * opened by acquiring `socket.reader` in a scope, bytes read with
 * `reader.pull` (non-empty batches of chunks) and written with the scoped
 * `socket.writer`'s `write`. (This Effect 4 release has no `socket.run`; the
 * reader/writer pair is its replacement.) Run by `run.ts` as
 * `node client-socket.ts '<job JSON>'`.
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { Effect } from "effect"
import type { Scope } from "effect"
import type * as Socket from "effect/socket/Socket"
import {
  ACK_BYTES,
  allocationMeter,
  awaitHandlesClosed,
  clientMain,
  perConnection,
  settledMemory,
  encodeLength,
  type Job,
  latencyMetrics,
  MiB,
  openTcpHandles,
  type Result,
  startProfile
} from "./common.ts"

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

/** Times `effect` and counts the heap bytes it allocates (see `measure` in common.ts). */
const timed = <A, E, R>(job: Job, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const stopProfile = yield* Effect.promise(() => startProfile(job))
    const allocated = allocationMeter()
    const t0 = performance.now()
    yield* effect
    const elapsedMs = performance.now() - t0
    const heap = allocated()
    yield* Effect.promise(stopProfile)
    return { elapsedMs, heap }
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

/** One connect (acquiring the reader opens it) and close (the scope's finalizers). */
const connects = (host: string, port: number, count: number, inFlight: number) => {
  const one = Effect.scoped(Effect.flatMap(NodeSocket.makeNet({ host, port, noDelay: true }), (socket) => socket.reader))
  return inFlight === 1
    ? Effect.gen(function*() {
      for (let i = 0; i < count; i++) yield* one
    })
    : Effect.forEach(Array.from({ length: count }), () => one, { concurrency: inFlight, discard: true })
}

const handlesClosed = (baseline: number) => Effect.promise(() => awaitHandlesClosed(baseline, 10_000))

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
        const { elapsedMs, heap } = yield* timed(job, pingpong(conn, p.pingpongCount, samples))
        return {
          value: p.pingpongCount / (elapsedMs / 1000),
          metrics: { ...latencyMetrics(samples), heapPerOp: heap / p.pingpongCount },
          elapsedMs
        }
      }))
    case "bulk-send":
      return Effect.scoped(Effect.gen(function*() {
        const conn = yield* open(host, job.ports.sink)
        const chunk = new Uint8Array(p.chunkSize).fill(0x62)
        yield* sendBulk(conn, p.bulkWarmupBytes, chunk)
        const { elapsedMs, heap } = yield* timed(job, sendBulk(conn, p.bulkBytes, chunk))
        return { value: p.bulkBytes / MiB / (elapsedMs / 1000), metrics: { heapPerMiB: heap / (p.bulkBytes / MiB) }, elapsedMs }
      }))
    case "bulk-recv":
      return Effect.scoped(Effect.gen(function*() {
        const conn = yield* open(host, job.ports.source)
        yield* recvBulk(conn, p.bulkWarmupBytes)
        const { elapsedMs, heap } = yield* timed(job, recvBulk(conn, p.bulkBytes))
        return { value: p.bulkBytes / MiB / (elapsedMs / 1000), metrics: { heapPerMiB: heap / (p.bulkBytes / MiB) }, elapsedMs }
      }))
    case "bulk-recv-into":
    case "connect-seq-abort":
    case "connect-par-abort":
      return Effect.fail(new Error(`effect/socket has no ${job.workload} API`))
    case "connect-seq":
    case "connect-par":
      return Effect.gen(function*() {
        const inFlight = job.workload === "connect-par" ? p.inFlight : 1
        const baseline = openTcpHandles()
        yield* connects(host, job.ports.accept, p.connectsWarmup, inFlight)
        yield* handlesClosed(baseline)
        const { elapsedMs, heap } = yield* timed(job, 
          Effect.andThen(connects(host, job.ports.accept, p.connects, inFlight), handlesClosed(baseline))
        )
        return { value: p.connects / (elapsedMs / 1000), metrics: { heapPerOp: heap / p.connects }, elapsedMs }
      })
    case "idle":
      return Effect.gen(function*() {
        const baseline = openTcpHandles()
        yield* Effect.scoped(Effect.forEach(Array.from({ length: 8 }), () => open(host, job.ports.idle)))
        yield* handlesClosed(baseline)
        return yield* Effect.scoped(Effect.gen(function*() {
          const before = yield* Effect.promise(() => settledMemory(50))
          const t0 = performance.now()
          yield* Effect.forEach(Array.from({ length: p.idleConns }), () => open(host, job.ports.idle), {
            concurrency: p.inFlight,
            discard: true
          })
          const elapsedMs = performance.now() - t0
          const after = yield* Effect.promise(() => settledMemory(200))
          return perConnection(before, after, p.idleConns, elapsedMs)
        }))
      })
  }
}

clientMain((job) => Effect.runPromise(program(job)))
