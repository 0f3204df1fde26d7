/**
 * One worker thread of `server-workers.ts` (see there): listens with
 * `reusePort` on the port the main thread names (the first worker on a free
 * one) and echoes 16-byte requests, effect-tcp or raw `node:net`, until the
 * process is killed. Loads `effect` only for effect-tcp.
 */
import * as Net from "node:net"
import { parentPort, workerData } from "node:worker_threads"
import type { TcpSocket } from "../../src/index.ts"

/** What the main thread tells a worker. */
export interface WorkerJob {
  readonly impl: "raw" | "tcp"
  readonly host: string
  /** The first worker listens on a free port; the others wait to be told it. */
  readonly first: boolean
}

const serveTcp = async (job: WorkerJob, port: number, listening: (port: number) => void) => {
  const { Effect } = await import("effect")
  const { TcpListener, TcpNode } = await import("../../src/index.ts")
  /** Echoes 16-byte requests until the client finishes between two of them. */
  const echo = (socket: TcpSocket.TcpSocket) =>
    socket.recv(16).pipe(
      Effect.flatMap((request) => socket.send(request)),
      Effect.forever,
      Effect.catchTag("PeerClosed", () => Effect.void)
    )
  Effect.gen(function*() {
    const listener = yield* TcpListener.listen(`${job.host}:${port}`, { reusePort: true, backlog: 1024 })
    listening(listener.port)
    yield* TcpListener.serve(listener, echo)
  }).pipe(Effect.scoped, Effect.provide(TcpNode.layer), Effect.runFork)
}

const serveRaw = (job: WorkerJob, port: number, listening: (port: number) => void) => {
  const server = Net.createServer({ noDelay: true }, (socket) => {
    socket.on("error", () => {})
    socket.on("data", (data) => socket.write(data))
  })
  server.listen({ host: job.host, port, backlog: 1024, reusePort: true }, () => {
    const address = server.address()
    if (address !== null && typeof address !== "string") listening(address.port)
  })
}

const job = workerData as WorkerJob
const listening = (port: number) => parentPort?.postMessage(port)
const serve = (port: number) => {
  if (job.impl === "raw") return serveRaw(job, port, listening)
  // A failure to load is an unhandled rejection: it ends the worker with an 'error' the main thread reports.
  void serveTcp(job, port, listening)
}
if (job.first) serve(0)
else parentPort?.once("message", (port: number) => serve(port))
