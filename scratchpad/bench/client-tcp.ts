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
  bulkResult,
  clientMain,
  connectsShape,
  encodeLength,
  type Job,
  pingpongResult,
  type Result
} from "./common.ts"
import { connectRate, idleGrowth, repeat, timed } from "./effect-common.ts"

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

const connects = (address: string, count: number, inFlight: number, abort: boolean) =>
  repeat(
    abort
      ? TcpClient.connect(address).pipe(Effect.flatMap((socket) => socket.abort), Effect.scoped)
      : TcpClient.connect(address).pipe(Effect.scoped),
    count,
    inFlight
  )

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
    case "idle":
      // Warms the code paths (and the pool's first slots), then measures.
      return idleGrowth(job, TcpClient.connect(at(job.ports.idle)))
  }
}

clientMain((job) => Effect.runPromise(program(job).pipe(Effect.provide(TcpNode.layer))))
