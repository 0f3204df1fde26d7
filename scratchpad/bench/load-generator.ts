/**
 * The load generator of the workers rows when there is no C compiler
 * (`run.ts` prefers `load-generator.c`, which spends about a third of the
 * CPU per request), a plain `node:net` program in its own process: `workerConnections` connections to the echo server under
 * test (`server-workers.ts`), each with one 16-byte request outstanding at
 * a time (the next goes when its echo is back). Requests are counted over
 * all connections, so connections the kernel gave a less busy worker simply
 * do more of them. A warm-up of `workerWarmup` requests, then
 * `workerRequests` timed; prints requests/s, per-request latency
 * percentiles, and the CPU time per request of this process and of the
 * server (from `/proc/<pid>/stat`, in 10 ms clock ticks). Run by `run.ts` as `node load-generator.ts '<job JSON>'`.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import { clientMain, connectNet, type Job, latencyMetrics, type Result } from "./common.ts"

const REQUEST_BYTES = 16

/**
 * Sends `total` requests over `sockets`, each socket one at a time; resolves
 * when every echo is back. Records each request's latency (ms) into
 * `samples` when given.
 */
const drive = (sockets: ReadonlyArray<Net.Socket>, total: number, samples?: Float64Array): Promise<void> =>
  new Promise((resolve, reject) => {
    const message = Buffer.alloc(REQUEST_BYTES, 0x61)
    let sent = 0
    let done = 0
    const detach: Array<() => void> = []
    const finish = (error?: Error) => {
      for (const off of detach) off()
      if (error === undefined) resolve()
      else reject(error)
    }
    for (const socket of sockets) {
      let pending = 0
      let started = 0
      const send = () => {
        sent += 1
        started = performance.now()
        socket.write(message)
      }
      const onData = (data: Buffer) => {
        pending += data.length
        while (pending >= REQUEST_BYTES) {
          pending -= REQUEST_BYTES
          if (samples !== undefined) samples[done] = performance.now() - started
          done += 1
          if (done === total) return finish()
          if (sent < total) send()
        }
      }
      const onError = (error: Error) => finish(error)
      const onClose = () => finish(new Error("the server closed a connection"))
      socket.on("data", onData)
      socket.on("error", onError)
      socket.on("close", onClose)
      detach.push(() => {
        socket.off("data", onData)
        socket.off("error", onError)
        socket.off("close", onClose)
      })
      if (sent < total) send()
    }
  })

/** CPU time (user + system, µs) of process `pid` so far, from /proc (Linux); NaN when unreadable. */
const processCpuUs = (pid: number | undefined): number => {
  if (pid === undefined) return Number.NaN
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10_000
  } catch {
    return Number.NaN
  }
}

const cpuUs = () => {
  const usage = process.cpuUsage()
  return usage.user + usage.system
}

const run = async (job: Job): Promise<Result> => {
  const port = job.servePort
  if (port === undefined) throw new Error("no server port in the job")
  const p = job.params
  const sockets = await Promise.all(Array.from({ length: p.workerConnections }, () => connectNet(job.host, port)))
  await drive(sockets, p.workerWarmup)
  const samples = new Float64Array(p.workerRequests)
  const cpu0 = cpuUs()
  const server0 = processCpuUs(job.servePid)
  const t0 = performance.now()
  await drive(sockets, p.workerRequests, samples)
  const elapsedMs = performance.now() - t0
  const cpu = cpuUs() - cpu0
  const server = processCpuUs(job.servePid) - server0
  for (const socket of sockets) socket.destroy()
  return {
    value: p.workerRequests / (elapsedMs / 1000),
    metrics: { ...latencyMetrics(samples), cpuPerOp: cpu / p.workerRequests, serverCpuPerOp: server / p.workerRequests },
    elapsedMs
  }
}

clientMain(run)
