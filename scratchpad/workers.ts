/**
 * A server across cores: N worker threads each listen on the same address
 * with `TcpListener.listen(address, {})` and run
 * `TcpListener.serve`; the kernel spreads incoming connections across their
 * listeners (`SO_REUSEPORT`), so each core runs its own event loop and
 * accept queue, with nothing passed between threads. Each worker answers
 * every CRLF-terminated line a client sends with the line, prefixed with
 * the worker's number.
 *
 *     node scratchpad/workers.ts [PORT] [--workers N]  # serve on 127.0.0.1:PORT (default 0: a free port) until Ctrl-C
 *     nc -C 127.0.0.1 PORT                             # then type lines; each connection stays with one worker
 *     node scratchpad/workers.ts --demo [--workers N]  # `npm run workers`: 2 workers, 64 clients, who answered, then exit
 *
 * Worker threads rather than child processes: one process to start and
 * stop (Ctrl-C reaches one process, which tells each worker to close its
 * listener and waits for it), each worker still an event loop and V8 heap
 * of its own. Child processes work the same way (each calls `listen` with
 * `reusePort`) and isolate crashes; `node:cluster` is not needed.
 *
 * `reusePort` is Linux 3.9+, FreeBSD 12+ and DragonFly BSD; elsewhere (macOS,
 * Windows) `listen` fails and the workers report why. The first worker
 * picks the port (port 0), the others then join its group.
 *
 * The demo opens 64 connections at once, so the kernel's spread reaches
 * every worker (with 2 workers, all 64 on one has odds of 2^-63), and
 * shares one 10-second deadline, so it ends by itself.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Data, Effect, Fiber, Option } from "effect"
import type { Scope } from "effect"
import { availableParallelism } from "node:os"
import { parseArgs } from "node:util"
import { isMainThread, parentPort, threadId, Worker, workerData } from "node:worker_threads"
import { Deadline, TcpClient, type TcpError, TcpListener, TcpMessage, TcpNode, type TcpSocket } from "../src/index.ts"

/** Longest line a worker accepts. */
const MAX_LINE = 1024

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** What the main thread tells a worker at its start. */
interface WorkerJob {
  /** 1, 2, ...: the number the worker prefixes its answers with. */
  readonly index: number
  readonly port: number
}

/** What a worker tells the main thread. */
type WorkerMessage =
  | { readonly type: "listening"; readonly port: number }
  | { readonly type: "failed"; readonly reason: string }

// ---------------------------------------------------------------------------
// A worker

/** One connection: answers each line with the worker's number before it, until the client finishes. */
const answer = (index: number) => (socket: TcpSocket.TcpSocket) =>
  Effect.gen(function*() {
    const lines = yield* TcpMessage.crlf(socket, { max: MAX_LINE })
    while (true) {
      const line = yield* lines.recv().pipe(
        Effect.map(Option.some),
        Effect.catchTag("PeerClosed", () => Effect.succeedNone)
      )
      if (Option.isNone(line)) return
      yield* lines.send(encoder.encode(`worker ${index} (thread ${threadId}): ${decoder.decode(line.value)}`))
    }
  })

/**
 * Listens with `reusePort`, says so, and serves until the main thread says
 * "stop": then closes the listener, and `serve` returns once the
 * connections it is handling have ended.
 */
const worker = (job: WorkerJob) =>
  Effect.gen(function*() {
    const listener = yield* TcpListener.listen(`127.0.0.1:${job.port}`, { reusePort: true })
    const serving = yield* Effect.forkScoped(TcpListener.serve(listener, answer(job.index)))
    parentPort?.postMessage({ type: "listening", port: listener.port } satisfies WorkerMessage)
    yield* Effect.callback<void>((resume) => {
      const onStop = () => resume(Effect.void)
      parentPort?.once("message", onStop)
      return Effect.sync(() => parentPort?.off("message", onStop))
    })
    yield* listener.close
    yield* Fiber.join(serving)
  }).pipe(Effect.scoped, Effect.provide(TcpNode.layer))

// ---------------------------------------------------------------------------
// The main thread

class WorkerFailed extends Data.TaggedError("WorkerFailed")<{ readonly index: number; readonly reason: string }> {
  override get message() {
    return `worker ${this.index}: ${this.reason}`
  }
}

/**
 * Starts worker `index` on `port` and waits until it listens (its port);
 * when the scope closes, tells it to stop and waits for it to exit (5
 * seconds at most, then ends it).
 */
const startWorker = (index: number, port: number): Effect.Effect<number, WorkerFailed, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ readonly thread: Worker; readonly port: number }, WorkerFailed>((resume) => {
      const thread = new Worker(new URL(import.meta.url), { workerData: { index, port } satisfies WorkerJob })
      const fail = (reason: string) => {
        detach()
        void thread.terminate()
        resume(Effect.fail(new WorkerFailed({ index, reason })))
      }
      const onMessage = (message: WorkerMessage) => {
        if (message.type === "failed") return fail(message.reason)
        detach()
        resume(Effect.succeed({ thread, port: message.port }))
      }
      const onError = (error: Error) => fail(error.message)
      const onExit = (code: number) => fail(`exited with code ${code} before listening`)
      const detach = () => {
        thread.off("message", onMessage)
        thread.off("error", onError)
        thread.off("exit", onExit)
      }
      thread.on("message", onMessage)
      thread.on("error", onError)
      thread.on("exit", onExit)
      return Effect.sync(() => {
        detach()
        void thread.terminate()
      })
    }),
    ({ thread }) =>
      Effect.callback<void>((resume) => {
        const timer = setTimeout(() => void thread.terminate(), 5_000)
        thread.once("exit", () => {
          clearTimeout(timer)
          resume(Effect.void)
        })
        thread.postMessage("stop")
      })
  ).pipe(Effect.map((started) => started.port))

/** Starts `count` workers sharing one port (the first picks it when `port` is 0); returns the port. */
const startWorkers = (count: number, port: number) =>
  Effect.gen(function*() {
    const shared = yield* startWorker(1, port)
    yield* Effect.forEach(Array.from({ length: count - 1 }, (_, i) => i + 2), (index) => startWorker(index, shared), {
      concurrency: "unbounded",
      discard: true
    })
    return shared
  })

/** One client of the demo: a connection, a line, the answer, a graceful close. */
const ask = (address: string, client: number, deadline: Deadline.Deadline) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* TcpClient.connect(address, { deadline })
    const lines = yield* TcpMessage.crlf(socket, { max: MAX_LINE })
    yield* lines.send(encoder.encode(`hello from client ${client}`), { deadline })
    const reply = decoder.decode(yield* lines.recv({ deadline }))
    yield* socket.close({ deadline })
    return reply
  }))

const demo = (workers: number) =>
  Effect.gen(function*() {
    const port = yield* startWorkers(workers, 0)
    const address = `127.0.0.1:${port}`
    yield* Console.log(`${workers} workers listening on ${address} (reusePort)`)
    const deadline = yield* Deadline.after("10 seconds")
    const clients = Array.from({ length: 64 }, (_, i) => i + 1)
    const replies = yield* Effect.forEach(clients, (client) => ask(address, client, deadline), { concurrency: "unbounded" })
    for (const [i, reply] of replies.slice(0, 4).entries()) yield* Console.log(`client ${i + 1} <- ${JSON.stringify(reply)}`)
    const answered = new Map<number, number>()
    for (const reply of replies) {
      const index = Number(/^worker (\d+) /.exec(reply)?.[1] ?? 0)
      answered.set(index, (answered.get(index) ?? 0) + 1)
    }
    const counts = Array.from({ length: workers }, (_, i) => `worker ${i + 1}: ${answered.get(i + 1) ?? 0}`)
    yield* Console.log(`${replies.length} clients answered by ${counts.join(", ")}`)
  })

const serveForever = (workers: number, port: number) =>
  Effect.gen(function*() {
    const shared = yield* startWorkers(workers, port)
    yield* Console.log(`${workers} workers on 127.0.0.1:${shared} (try: nc -C 127.0.0.1 ${shared}); Ctrl-C stops them`)
    return yield* Effect.never
  })

if (isMainThread) {
  const { values, positionals } = parseArgs({
    options: { demo: { type: "boolean", default: false }, workers: { type: "string" } },
    allowPositionals: true
  })
  const workers = Number(values.workers ?? (values.demo ? 2 : availableParallelism()))
  const port = Number(positionals[0] ?? 0)
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    console.error("--workers must be an integer from 1 to 64")
    process.exit(2)
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error("PORT must be an integer from 0 to 65535")
    process.exit(2)
  }
  const main: Effect.Effect<void, WorkerFailed | TcpError.TcpError> = (values.demo
    ? demo(workers)
    : serveForever(workers, port)).pipe(Effect.scoped, Effect.provide(TcpNode.layer))
  NodeRuntime.runMain(main)
} else {
  const job = workerData as WorkerJob
  Effect.runPromiseExit(worker(job)).then((exit) => {
    if (exit._tag === "Failure") {
      const error = Cause.squash(exit.cause)
      const reason = error instanceof Error ? error.message : String(error)
      parentPort?.postMessage({ type: "failed", reason } satisfies WorkerMessage)
    }
  })
}
