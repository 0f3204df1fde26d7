/**
 * The baseline: each workload written the fastest idiomatic way with plain
 * `node:net` (`data` events, `write` with `drain` backpressure, `noDelay`);
 * the TLS rows the same through `node:tls`. Run by `run.ts` as
 * `node client-raw.ts '<job JSON>'`.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Tls from "node:tls"
import {
  ACK_BYTES,
  awaitHandlesClosed,
  bulkResult,
  clientMain,
  connectNet,
  connectsResult,
  connectsShape,
  encodeLength,
  isCheckedLine,
  type Job,
  LINE_BYTES,
  lineMismatch,
  linesResult,
  measure,
  openTcpHandles,
  perConnection,
  pingpongResult,
  requestsResult,
  type Result,
  settledMemory
} from "./common.ts"

/** A `node:tls` connection that trusts the bench's CA, its handshake done. */
const connectTls = (job: Job, port: number | undefined): Promise<Tls.TLSSocket> =>
  new Promise((resolve, reject) => {
    if (job.tls === undefined || port === undefined) return reject(new Error("the peer has no TLS listeners"))
    const socket = Tls.connect({ host: job.host, port, ca: Fs.readFileSync(job.tls.caFile) })
    socket.once("secureConnect", () => {
      socket.off("error", reject)
      socket.setNoDelay(true)
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

const LF = 0x0a
const CR = 0x0d

/**
 * Asks the lines peer for `count` lines and splits the `data` chunks by
 * hand: `indexOf` the LF, check the CR before it, the line is a view of
 * the chunk; a line cut between chunks is carried over and joined (one
 * copy) when its end arrives. Checks every line's length, some lines'
 * bytes, and the count.
 */
const recvLines = (socket: Net.Socket, count: number): Promise<void> =>
  new Promise((resolve, reject) => {
    let received = 0
    let carried: Buffer | undefined
    const fail = (error: Error) => {
      socket.off("data", onData)
      socket.off("error", reject)
      reject(error)
    }
    const onLine = (line: Buffer): boolean => {
      if (line.length !== LINE_BYTES + 1 || line[LINE_BYTES] !== CR) {
        fail(new Error(`line ${received}: ${line.length} bytes before the LF, or no CR`))
        return false
      }
      const mismatch = isCheckedLine(received, count) ? lineMismatch(line.subarray(0, LINE_BYTES), received) : undefined
      if (mismatch !== undefined) {
        fail(new Error(mismatch))
        return false
      }
      received += 1
      return true
    }
    const onData = (data: Buffer) => {
      let from = 0
      let lf = data.indexOf(LF)
      if (carried !== undefined && lf !== -1) {
        if (!onLine(Buffer.concat([carried, data.subarray(0, lf)]))) return
        carried = undefined
        from = lf + 1
        lf = data.indexOf(LF, from)
      }
      while (lf !== -1) {
        if (!onLine(data.subarray(from, lf))) return
        from = lf + 1
        lf = data.indexOf(LF, from)
      }
      if (from < data.length) carried = carried === undefined ? data.subarray(from) : Buffer.concat([carried, data])
      if (received < count) return
      socket.off("data", onData)
      socket.off("error", reject)
      if (received > count || carried !== undefined) reject(new Error(`more than the ${count} lines asked for`))
      else resolve()
    }
    socket.on("data", onData)
    socket.once("error", reject)
    socket.write(encodeLength(count))
  })

/** One 16-byte request and its echo on a connection of its own: connect, write, read 16 bytes, end. */
const requestOnce = (host: string, port: number, message: Buffer): Promise<void> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ host, port, noDelay: true })
    let received = 0
    socket.once("connect", () => socket.write(message))
    socket.on("data", (data: Buffer) => {
      received += data.length
      if (received < message.length) return
      socket.off("error", reject)
      socket.on("error", () => {})
      socket.end()
      resolve()
    })
    socket.once("error", reject)
  })

const requestsConnecting = async (job: Job, count: number): Promise<void> => {
  const message = Buffer.alloc(16, 0x61)
  for (let i = 0; i < count; i++) await requestOnce(job.host, job.ports.echo, message)
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
      const socket = await connectNet(host, job.ports.echo)
      await pingpong(socket, p.pingpongWarmup)
      const samples = new Float64Array(p.pingpongCount)
      const measured = await measure(job, () => pingpong(socket, p.pingpongCount, samples))
      socket.destroy()
      return pingpongResult(p.pingpongCount, samples, measured)
    }
    case "bulk-send": {
      const socket = await connectNet(host, job.ports.sink)
      const chunk = Buffer.alloc(p.chunkSize, 0x62)
      await sendBulk(socket, p.bulkWarmupBytes, chunk)
      const measured = await measure(job, () => sendBulk(socket, p.bulkBytes, chunk))
      socket.destroy()
      return bulkResult(p.bulkBytes, measured)
    }
    case "bulk-recv":
    case "bulk-recv-into": {
      const socket = await connectNet(host, job.ports.source)
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
    case "lines":
    case "lines-crlf":
    case "lines-stream": {
      const socket = await connectNet(host, job.ports.lines)
      await recvLines(socket, p.linesWarmup)
      const measured = await measure(job, () => recvLines(socket, p.linesCount))
      socket.destroy()
      return linesResult(p.linesCount, measured)
    }
    case "tls-pingpong": {
      const socket = await connectTls(job, job.ports.tlsEcho)
      await pingpong(socket, p.tlsPingpongWarmup)
      const samples = new Float64Array(p.tlsPingpongCount)
      const measured = await measure(job, () => pingpong(socket, p.tlsPingpongCount, samples))
      socket.destroy()
      return pingpongResult(p.tlsPingpongCount, samples, measured)
    }
    case "tls-bulk-recv-into": {
      const socket = await connectTls(job, job.ports.tlsSource)
      await recvBulk(socket, p.bulkWarmupBytes)
      const measured = await measure(job, () => recvBulk(socket, p.bulkBytes))
      socket.destroy()
      return bulkResult(p.bulkBytes, measured)
    }
    case "workers-1":
    case "workers-2":
      throw new Error("the workers rows are driven by load-generator.ts")
    case "request-pool":
      throw new Error("raw node:net has no connection pool")
    case "request-connect": {
      const baseline = openTcpHandles()
      await requestsConnecting(job, p.connectsWarmup)
      await awaitHandlesClosed(baseline, 10_000)
      const measured = await measure(job, async () => {
        await requestsConnecting(job, p.requestConnects)
        await awaitHandlesClosed(baseline, 10_000)
      })
      return requestsResult(p.requestConnects, measured)
    }
    case "idle": {
      // Warm the code paths, then measure RSS around `idleConns` open connections.
      const warm = await Promise.all(Array.from({ length: 8 }, () => connectNet(host, job.ports.idle)))
      for (const socket of warm) socket.destroy()
      const before = await settledMemory(50)
      const t0 = performance.now()
      const sockets: Array<Net.Socket> = []
      for (let i = 0; i < p.idleConns; i += p.inFlight) {
        const batch = Math.min(p.inFlight, p.idleConns - i)
        sockets.push(...await Promise.all(Array.from({ length: batch }, () => connectNet(host, job.ports.idle))))
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
