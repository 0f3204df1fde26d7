/**
 * Load: 1,000 concurrent connections through one listener, each a full
 * request/response (our sockets at both ends), with no error and nothing
 * left behind; then the same 1,000 with a client pool of 100 slots —
 * `onExhausted: "wait"` makes callers wait (no error), `"fail"` turns the
 * excess into `OutOfMemory` at once and nothing else.
 *
 * 1,000 connections are 2,000 descriptors in this process: the file raises
 * its own descriptor limit when it can (root), and skips with the reason
 * otherwise (outside CI).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer } from "effect"
import type { Scope } from "effect"
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { TcpClient, TcpListener, TcpNode, TcpStorage } from "../../src/index.ts"
import type { TcpError, TcpSocket } from "../../src/index.ts"
import { checkFdLeaks, expectPoolIdle, fdsBackTo, openFds, turns } from "../helpers.ts"
import { classify, KiB } from "./support.ts"

const CONNECTIONS = 1000
const T = { timeout: "20 seconds", closeTimeout: "5 seconds" } as const

/** This process's descriptor limit (soft), from /proc/self/limits. */
const softLimit = (): number => {
  const row = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"))
  const soft = row?.split(/\s{2,}/)[1]
  return soft === "unlimited" ? Infinity : Number(soft)
}

/** Room for 2,000 sockets plus the rest of the process, raising the limit (prlimit) if need be. */
const fdRoom: string | undefined = (() => {
  const needed = 4 * CONNECTIONS
  try {
    if (softLimit() >= needed) return undefined
    const raised = spawnSync("prlimit", ["--pid", String(process.pid), `--nofile=${needed}:${needed}`], { encoding: "utf8" })
    if (softLimit() >= needed) return undefined
    return `descriptor limit ${softLimit()} < ${needed} and prlimit could not raise it: ${raised.stderr.trim()}`
  } catch (e) {
    return `cannot read or raise the descriptor limit: ${String(e)}`
  }
})()
const onCi = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false"
if (fdRoom !== undefined) console.log(`[faults/load] ${onCi ? "FAILING (CI)" : "skipping"}: ${fdRoom}`)

const request = (i: number) => new TextEncoder().encode(`GET ${String(i).padStart(6, "0")}\n`.padEnd(64, "."))
const response = (req: Uint8Array) => Uint8Array.from(req, (b) => b ^ 0x5a)

/**
 * The server: one acceptor fiber per expected connection at most, each
 * socket scoped to its handler (read the 64-byte request, answer, close).
 */
const serve = (listener: TcpListener.TcpListener) =>
  Effect.forever(
    listener.accept(T).pipe(
      Effect.flatMap((socket) =>
        Effect.gen(function*() {
          const req = yield* socket.recv(64, T)
          yield* socket.send(response(req), T)
          yield* socket.close(T)
        })
      ),
      Effect.scoped,
      Effect.ignore
    )
  )

/** One client: connect, request, exact response, close. */
const exchange = (address: string, i: number) =>
  Effect.gen(function*() {
    const socket: TcpSocket.TcpSocket = yield* TcpClient.connect(address, T)
    const req = request(i)
    yield* socket.send(req, T)
    const res = yield* socket.recv(64, T)
    assert.deepStrictEqual(res, response(req), `connection ${i}`)
    yield* socket.close(T)
  }).pipe(Effect.scoped)

/** Runs `serve` with 200 acceptor fibers for the duration of `body`. */
const withServer = <A, E, R>(
  listener: TcpListener.TcpListener,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | TcpStorage.TcpStorage | Scope.Scope> =>
  Effect.gen(function*() {
    const acceptors = yield* Effect.forkChild(
      Effect.all(Array.from({ length: 200 }, () => serve(listener)), { concurrency: "unbounded", discard: true })
    )
    const result = yield* body
    yield* Fiber.interrupt(acceptors)
    return result
  })

/** All CONNECTIONS exchanges at once, each one's exit kept. */
const everyExchange = (address: string) =>
  Effect.forEach(Array.from({ length: CONNECTIONS }, (_, i) => i), (i) => Effect.exit(exchange(address, i)), {
    concurrency: "unbounded"
  })

/** Asserts every exchange succeeded, showing the first few failures otherwise. */
const expectNoFailures = (result: ReadonlyArray<Exit.Exit<unknown, unknown>>): void => {
  const failures = result.filter(Exit.isFailure).map((e) => JSON.stringify(classify(e)))
  assert.deepStrictEqual(failures.slice(0, 5), [], `${failures.length} of ${CONNECTIONS} failed`)
}

/** Samples `TcpStorage.stats` of the pool in context at every turn of the event loop while `body` runs. */
const sampled = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    let maxWaiting = 0
    let maxInUse = 0
    const sampler = yield* Effect.forkChild(Effect.forever(Effect.andThen(
      TcpStorage.stats,
      (s) =>
        Effect.andThen(
          Effect.sync(() => {
            maxWaiting = Math.max(maxWaiting, s.waiting)
            maxInUse = Math.max(maxInUse, s.inUse)
          }),
          turns(1)
        )
    )))
    const result = yield* body
    yield* Fiber.interrupt(sampler)
    return { result, maxWaiting, maxInUse }
  })

/** The listener's pool: room for every server-side socket. */
const ServerPool = TcpStorage.layer({ slots: CONNECTIONS + 100, bufferSize: 4 * KiB })

describe("faults: load", () => {
  checkFdLeaks()

  it.live.skipIf(fdRoom !== undefined && !onCi)(
    "1,000 concurrent connections through one listener, a full request/response each",
    () =>
      Effect.gen(function*() {
        assert.isUndefined(fdRoom)
        const fdsBefore = openFds()
        const started = Date.now()
        yield* Effect.gen(function*() {
          const listener = yield* TcpListener.listen("127.0.0.1:0", { backlog: 1024, pending: CONNECTIONS })
          const address = `127.0.0.1:${listener.port}`
          const { maxInUse, result } = yield* withServer(listener, sampled(
            everyExchange(address)
          ))
          expectNoFailures(result)
          const stats = yield* TcpStorage.stats
          console.log(
            `[faults/load] ${CONNECTIONS} concurrent exchanges in ${Date.now() - started} ms, no error; ` +
              `pool high water ${stats.highWater} (sampled ${maxInUse}), slots created ${stats.slots}`
          )
          yield* expectPoolIdle
        }).pipe(Effect.scoped, Effect.provide(TcpNode.layerWith({ slots: 2 * CONNECTIONS + 100, bufferSize: 4 * KiB })))
        yield* fdsBackTo(fdsBefore, "descriptors left behind")
      }),
    60_000
  )

  it.live.skipIf(fdRoom !== undefined && !onCi)(
    "a client pool of 100 for 1,000 connections: \"wait\" queues callers without error",
    () =>
      Effect.gen(function*() {
        assert.isUndefined(fdRoom)
        const started = Date.now()
        const listener = yield* TcpListener.listen("127.0.0.1:0", { backlog: 1024, pending: CONNECTIONS })
        const address = `127.0.0.1:${listener.port}`
        yield* withServer(listener, Effect.gen(function*() {
          const { maxInUse, maxWaiting, result } = yield* sampled(
            everyExchange(address)
          )
          expectNoFailures(result)
          const stats = yield* TcpStorage.stats
          console.log(
            `[faults/load] "wait", 100 client slots, ${CONNECTIONS} connections: all succeeded in ${Date.now() - started} ms; ` +
              `up to ${maxWaiting} callers waited for a slot; high water ${stats.highWater} (sampled ${maxInUse})`
          )
          assert.strictEqual(stats.highWater, 100, "the pool never exceeds its size")
          assert.isAbove(maxWaiting, 100, "callers waited for slots instead of failing")
          yield* expectPoolIdle
        }).pipe(Effect.provide(TcpNode.layerWith({ slots: 100, bufferSize: 4 * KiB, onExhausted: "wait" }))))
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(Layer.fresh(ServerPool))),
    60_000
  )

  it.live.skipIf(fdRoom !== undefined && !onCi)(
    "a client pool of 100 for 1,000 connections: \"fail\" gives OutOfMemory at once for the excess, nothing else",
    () =>
      Effect.gen(function*() {
        assert.isUndefined(fdRoom)
        const listener = yield* TcpListener.listen("127.0.0.1:0", { backlog: 1024, pending: CONNECTIONS })
        const address = `127.0.0.1:${listener.port}`
        yield* withServer(listener, Effect.gen(function*() {
          const { maxWaiting, result: outcomes } = yield* sampled(Effect.forEach(
            Array.from({ length: CONNECTIONS }, (_, i) => i),
            (i) =>
              Effect.gen(function*() {
                const start = Date.now()
                const exit = yield* Effect.exit(exchange(address, i))
                return { exit, ms: Date.now() - start }
              }),
            { concurrency: "unbounded" }
          ))
          const ok = outcomes.filter((o) => Exit.isSuccess(o.exit)).length
          const oom = outcomes.filter((o) => {
            const c = classify(o.exit)
            return c.kind === "error" && c.tag === "OutOfMemory"
          })
          const other = outcomes.filter((o) => {
            const c = classify(o.exit)
            return !(c.kind === "success" || (c.kind === "error" && c.tag === "OutOfMemory"))
          }).map((o) => JSON.stringify(classify(o.exit)))
          const stats = yield* TcpStorage.stats
          console.log(
            `[faults/load] "fail", 100 client slots, ${CONNECTIONS} connections: ${ok} succeeded, ` +
              `${oom.length} OutOfMemory (slowest ${Math.max(0, ...oom.map((o) => o.ms))} ms), ${other.length} other; ` +
              `high water ${stats.highWater}`
          )
          assert.deepStrictEqual(other.slice(0, 5), [], "only successes and OutOfMemory")
          assert.isAtLeast(ok, 100, "every slot served a connection")
          assert.strictEqual(ok + oom.length, CONNECTIONS)
          assert.isAbove(oom.length, 0, "the excess failed fast")
          for (const { exit } of oom) {
            const c = classify(exit)
            if (c.kind === "error") {
              const e = c.error as TcpError.OutOfMemory
              assert.strictEqual(e.errno, "ENOMEM")
              assert.strictEqual(e.syscall, "connect")
            }
          }
          // At once: nobody ever queued for a slot (how long it took is logged above, not asserted).
          assert.strictEqual(maxWaiting, 0, "OutOfMemory comes at once, it does not wait for a slot")
          assert.strictEqual(stats.highWater, 100)
          yield* expectPoolIdle
        }).pipe(Effect.provide(TcpNode.layerWith({ slots: 100, bufferSize: 4 * KiB, onExhausted: "fail" }))))
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(Layer.fresh(ServerPool))),
    60_000
  )
})
