/**
 * The server of the workers rows: an echo server of N worker threads that
 * share one port with `SO_REUSEPORT`, the kernel spreading connections
 * across their listeners. Each worker echoes 16-byte requests: effect-tcp
 * (`impl` "tcp") with `TcpListener.listen(address, { reusePort: true })`
 * and `TcpListener.serve` running `recv(16)` + `send` until the client
 * finishes; raw `node:net` (`impl` "raw") with `reusePort` and a `write` per
 * `data` event, as the machine's reference.
 *
 * Run by `run.ts` as `node server-workers.ts '{"impl":"tcp","workers":2,"host":"127.0.0.1"}'`:
 * prints `{"port":P}` once every worker listens, and serves until killed.
 * The workers run `server-worker.ts`; this main thread loads no `effect`,
 * so it starts them at once. With `"port":P` in the job, every worker joins
 * port P's group instead (a second process beside a first one: how the
 * threads-or-processes comparison in the README was run).
 *
 * Worker threads rather than child processes: one process to start, watch
 * and stop, each worker an event loop and V8 heap of its own with no
 * process image or IPC channel more, and `reusePort` needs nothing shared
 * between them (each worker's listen makes its own socket in the port's
 * group; unlike `node:cluster`, no handle passes through the main thread).
 * Two processes of one worker each serve at the same rate here.
 */
import { Worker } from "node:worker_threads"
import type { WorkerJob } from "./server-worker.ts"

interface ServerJob {
  readonly impl: WorkerJob["impl"]
  readonly workers: number
  readonly host: string
  /** Join this port's reusePort group (another process's) instead of picking a free one. */
  readonly port?: number
}

/** Starts one worker: `port` tells it the port to join (the first one finds its own), resolves with the port it listens on. */
const startWorker = (job: WorkerJob, port: Promise<number>): Promise<number> =>
  new Promise((resolve, reject) => {
    const worker = new Worker(new URL("server-worker.ts", import.meta.url), { workerData: job })
    worker.once("message", (listening: number) => resolve(listening))
    worker.once("error", reject)
    worker.once("exit", (code) => reject(new Error(`worker exited with ${code} before listening`)))
    if (!job.first) port.then((p) => worker.postMessage(p), reject)
  })

const arg = process.argv[2]
if (arg === undefined) {
  process.stderr.write("usage: server-workers.ts '{\"impl\":\"tcp\",\"workers\":2,\"host\":\"127.0.0.1\"}'\n")
  process.exit(2)
}
const job = JSON.parse(arg) as ServerJob
const main = async () => {
  // All start (and load their modules) at once; the first picks the port,
  // the others then join its reusePort group.
  const port = job.port === undefined
    ? startWorker({ impl: job.impl, host: job.host, first: true }, Promise.resolve(0))
    : Promise.resolve(job.port)
  await Promise.all([
    port,
    ...Array.from(
      { length: job.port === undefined ? job.workers - 1 : job.workers },
      () => startWorker({ impl: job.impl, host: job.host, first: false }, port)
    )
  ])
  process.stdout.write(`${JSON.stringify({ port: await port })}\n`)
}
main().catch((error: unknown) => {
  process.stderr.write(`server-workers: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exit(1)
})
