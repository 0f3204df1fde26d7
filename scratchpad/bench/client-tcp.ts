/**
 * The workloads through effect-tcp's normal API: `TcpClient.connect`,
 * `socket.send` in 64 KiB chunks, `socket.recv(n)` / `socket.recvInto(buffer)`,
 * every connect inside `Effect.scoped`, the default `TcpNode.layer` (64 KiB
 * slots). Run by `run.ts` as `node client-tcp.ts '<job JSON>'`.
 */
import { Effect } from "effect"
import { TcpClient, type TcpError, TcpNode, type TcpSocket } from "../../src/index.ts"
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

type Client = TcpClient.TcpClient

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

const connects = (address: string, count: number, inFlight: number, abort: boolean) => {
  const one = abort
    ? TcpClient.connect(address).pipe(Effect.flatMap((socket) => socket.abort), Effect.scoped)
    : TcpClient.connect(address).pipe(Effect.scoped)
  return inFlight === 1
    ? Effect.gen(function*() {
      for (let i = 0; i < count; i++) yield* one
    })
    : Effect.forEach(Array.from({ length: count }), () => one, { concurrency: inFlight, discard: true })
}

const handlesClosed = (baseline: number) => Effect.promise(() => awaitHandlesClosed(baseline, 10_000))

const program = (job: Job): Effect.Effect<Result, TcpError.TcpError, Client> => {
  const { host, params: p } = job
  const at = (port: number) => `${host}:${port}`
  switch (job.workload) {
    case "pingpong":
    case "pingpong-into":
    case "pingpong-1core":
      return Effect.scoped(Effect.gen(function*() {
        const into = job.workload === "pingpong-into"
        const socket = yield* TcpClient.connect(at(job.ports.echo))
        yield* pingpong(socket, p.pingpongWarmup, into)
        const samples = new Float64Array(p.pingpongCount)
        const { elapsedMs, heap } = yield* timed(job, pingpong(socket, p.pingpongCount, into, samples))
        yield* socket.abort
        return {
          value: p.pingpongCount / (elapsedMs / 1000),
          metrics: { ...latencyMetrics(samples), heapPerOp: heap / p.pingpongCount },
          elapsedMs
        }
      }))
    case "bulk-send":
      return Effect.scoped(Effect.gen(function*() {
        const socket = yield* TcpClient.connect(at(job.ports.sink))
        const chunk = new Uint8Array(p.chunkSize).fill(0x62)
        yield* sendBulk(socket, p.bulkWarmupBytes, chunk)
        const { elapsedMs, heap } = yield* timed(job, sendBulk(socket, p.bulkBytes, chunk))
        yield* socket.abort
        return { value: p.bulkBytes / MiB / (elapsedMs / 1000), metrics: { heapPerMiB: heap / (p.bulkBytes / MiB) }, elapsedMs }
      }))
    case "bulk-recv":
    case "bulk-recv-into":
      return Effect.scoped(Effect.gen(function*() {
        const into = job.workload === "bulk-recv-into" ? new Uint8Array(p.chunkSize) : undefined
        const socket = yield* TcpClient.connect(at(job.ports.source))
        yield* recvBulk(socket, p.bulkWarmupBytes, p.chunkSize, into)
        const { elapsedMs, heap } = yield* timed(job, recvBulk(socket, p.bulkBytes, p.chunkSize, into))
        yield* socket.abort
        return { value: p.bulkBytes / MiB / (elapsedMs / 1000), metrics: { heapPerMiB: heap / (p.bulkBytes / MiB) }, elapsedMs }
      }))
    case "connect-seq":
    case "connect-par":
    case "connect-seq-abort":
    case "connect-par-abort":
      return Effect.gen(function*() {
        const inFlight = job.workload.startsWith("connect-par") ? p.inFlight : 1
        const abort = job.workload.endsWith("abort")
        const address = at(job.ports.accept)
        const baseline = openTcpHandles()
        yield* connects(address, p.connectsWarmup, inFlight, abort)
        yield* handlesClosed(baseline)
        const { elapsedMs, heap } = yield* timed(job, 
          Effect.andThen(connects(address, p.connects, inFlight, abort), handlesClosed(baseline))
        )
        return { value: p.connects / (elapsedMs / 1000), metrics: { heapPerOp: heap / p.connects }, elapsedMs }
      })
    case "idle":
      return Effect.gen(function*() {
        const address = at(job.ports.idle)
        const baseline = openTcpHandles()
        // Warm the code paths (and the pool's first slots), then measure.
        yield* Effect.scoped(Effect.forEach(Array.from({ length: 8 }), () => TcpClient.connect(address)))
        yield* handlesClosed(baseline)
        return yield* Effect.scoped(Effect.gen(function*() {
          const before = yield* Effect.promise(() => settledMemory(50))
          const t0 = performance.now()
          yield* Effect.forEach(Array.from({ length: p.idleConns }), () => TcpClient.connect(address), {
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

clientMain((job) => Effect.runPromise(program(job).pipe(Effect.provide(TcpNode.layer))))
