/**
 * The baseline: each workload written the fastest idiomatic way with plain
 * `node:net` (`data` events, `write` with `drain` backpressure, `noDelay`).
 * Run by `run.ts` as `node client-raw.ts '<job JSON>'`.
 */
import * as Net from "node:net"
import {
  ACK_BYTES,
  awaitHandlesClosed,
  bulkResult,
  clientMain,
  connectsResult,
  connectsShape,
  encodeLength,
  type Job,
  measure,
  openTcpHandles,
  perConnection,
  pingpongResult,
  type Result,
  settledMemory
} from "./common.ts"

const connect = (host: string, port: number): Promise<Net.Socket> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ host, port, noDelay: true })
    socket.once("connect", () => {
      socket.off("error", reject)
      resolve(socket)
    })
    socket.once("error", reject)
  })

/** Sequential 16-byte round trips; records each one's latency (ms) into `samples` when given. */
const pingpong = (socket: Net.Socket, count: number, samples?: Float64Array): Promise<void> =>
  new Promise((resolve, reject) => {
    const message = Buffer.alloc(16, 0x61)
    let done = 0
    let pending = 0
    let started = performance.now()
    const onData = (data: Buffer) => {
      pending += data.length
      while (pending >= 16) {
        pending -= 16
        const now = performance.now()
        if (samples !== undefined) samples[done] = now - started
        done += 1
        if (done === count) {
          socket.off("data", onData)
          socket.off("error", reject)
          return resolve()
        }
        started = performance.now()
        socket.write(message)
      }
    }
    socket.on("data", onData)
    socket.once("error", reject)
    started = performance.now()
    socket.write(message)
  })

/** Waits for `n` bytes from the socket, discarding them (the `data`-event reader). */
const drainBytes = (socket: Net.Socket, n: number): Promise<void> =>
  new Promise((resolve, reject) => {
    let left = n
    const onData = (data: Buffer) => {
      left -= data.length
      if (left > 0) return
      socket.off("data", onData)
      socket.off("error", reject)
      resolve()
    }
    socket.on("data", onData)
    socket.once("error", reject)
  })

/** Sends `n` bytes in `chunk`-sized writes with `drain` backpressure, then waits for the sink's ack. */
const sendBulk = (socket: Net.Socket, n: number, chunk: Buffer): Promise<void> =>
  new Promise((resolve, reject) => {
    const ack = drainBytes(socket, ACK_BYTES)
    socket.write(encodeLength(n))
    let left = n
    const pump = () => {
      while (left > 0) {
        const size = Math.min(left, chunk.length)
        left -= size
        if (!socket.write(size === chunk.length ? chunk : chunk.subarray(0, size))) {
          socket.once("drain", pump)
          return
        }
      }
      ack.then(resolve, reject)
    }
    pump()
  })

const recvBulk = (socket: Net.Socket, n: number): Promise<void> => {
  const received = drainBytes(socket, n)
  socket.write(encodeLength(n))
  return received
}

/** One connect and close: graceful (`end` and read to EOF) or `destroy`. Resolves once the close started. */
const connectClose = (host: string, port: number, abort: boolean): Promise<void> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ host, port, noDelay: true })
    socket.once("connect", () => {
      socket.off("error", reject)
      socket.on("error", () => {})
      if (abort) {
        socket.destroy()
      } else {
        socket.end()
        socket.resume()
      }
      resolve()
    })
    socket.once("error", reject)
  })

const connects = async (job: Job, count: number, inFlight: number, abort: boolean): Promise<void> => {
  let next = 0
  const worker = async () => {
    while (next < count) {
      next += 1
      await connectClose(job.host, job.ports.accept, abort)
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
}

const run = async (job: Job): Promise<Result> => {
  const { host, params: p } = job
  switch (job.workload) {
    case "pingpong":
    case "pingpong-into":
    case "pingpong-1core": {
      const socket = await connect(host, job.ports.echo)
      await pingpong(socket, p.pingpongWarmup)
      const samples = new Float64Array(p.pingpongCount)
      const measured = await measure(job, () => pingpong(socket, p.pingpongCount, samples))
      socket.destroy()
      return pingpongResult(p.pingpongCount, samples, measured)
    }
    case "bulk-send": {
      const socket = await connect(host, job.ports.sink)
      const chunk = Buffer.alloc(p.chunkSize, 0x62)
      await sendBulk(socket, p.bulkWarmupBytes, chunk)
      const measured = await measure(job, () => sendBulk(socket, p.bulkBytes, chunk))
      socket.destroy()
      return bulkResult(p.bulkBytes, measured)
    }
    case "bulk-recv":
    case "bulk-recv-into": {
      const socket = await connect(host, job.ports.source)
      await recvBulk(socket, p.bulkWarmupBytes)
      const measured = await measure(job, () => recvBulk(socket, p.bulkBytes))
      socket.destroy()
      return bulkResult(p.bulkBytes, measured)
    }
    case "connect-seq":
    case "connect-par":
    case "connect-seq-abort":
    case "connect-par-abort": {
      const { inFlight, abort } = connectsShape(job)
      const baseline = openTcpHandles()
      await connects(job, p.connectsWarmup, inFlight, abort)
      await awaitHandlesClosed(baseline, 10_000)
      const measured = await measure(job, async () => {
        await connects(job, p.connects, inFlight, abort)
        await awaitHandlesClosed(baseline, 10_000)
      })
      return connectsResult(p.connects, measured)
    }
    case "idle": {
      // Warm the code paths, then measure RSS around `idleConns` open connections.
      const warm = await Promise.all(Array.from({ length: 8 }, () => connect(host, job.ports.idle)))
      for (const socket of warm) socket.destroy()
      const before = await settledMemory(50)
      const t0 = performance.now()
      const sockets: Array<Net.Socket> = []
      for (let i = 0; i < p.idleConns; i += p.inFlight) {
        const batch = Math.min(p.inFlight, p.idleConns - i)
        sockets.push(...await Promise.all(Array.from({ length: batch }, () => connect(host, job.ports.idle))))
      }
      const elapsedMs = performance.now() - t0
      for (const socket of sockets) socket.on("error", () => {})
      const after = await settledMemory(200)
      for (const socket of sockets) socket.destroy()
      return perConnection(before, after, p.idleConns, elapsedMs)
    }
  }
}

clientMain(run)
