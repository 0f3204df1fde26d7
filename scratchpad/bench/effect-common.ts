/**
 * Shared by the two Effect clients (`client-tcp.ts`, `client-socket.ts`):
 * the timed section as an Effect, and the connects and idle-connection
 * workloads given how one connection is made. Apart from `common.ts` so that
 * the raw client never loads `effect`.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import {
  allocationMeter,
  awaitHandlesClosed,
  connectsResult,
  type Job,
  type Measured,
  openTcpHandles,
  perConnection,
  type Result,
  settledMemory,
  startProfile
} from "./common.ts"

/** Times `effect` and counts the heap bytes it allocates (`measure` in common.ts, as an Effect). */
export const timed = <A, E, R>(job: Job, effect: Effect.Effect<A, E, R>): Effect.Effect<Measured, E, R> =>
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

/** Waits until this process holds at most `baseline` TCP handles (at most 10 s). */
export const handlesClosed = (baseline: number): Effect.Effect<void> =>
  Effect.promise(() => awaitHandlesClosed(baseline, 10_000))

/** Runs `one` `count` times: one after another, or `inFlight` at a time. */
export const repeat = <E, R>(one: Effect.Effect<unknown, E, R>, count: number, inFlight: number): Effect.Effect<void, E, R> =>
  inFlight === 1
    ? Effect.gen(function*() {
      for (let i = 0; i < count; i++) yield* one
    })
    : Effect.forEach(Array.from({ length: count }), () => one, { concurrency: inFlight, discard: true })

/**
 * The connects workloads: `connects(n)` makes and closes n connections; a
 * warm-up round, then the timed one, each ending once every handle is
 * closed (see `awaitHandlesClosed` in common.ts).
 */
export const connectRate = <E, R>(
  job: Job,
  connects: (count: number) => Effect.Effect<void, E, R>
): Effect.Effect<Result, E, R> =>
  Effect.gen(function*() {
    const baseline = openTcpHandles()
    yield* connects(job.params.connectsWarmup)
    yield* handlesClosed(baseline)
    const measured = yield* timed(job, Effect.andThen(connects(job.params.connects), handlesClosed(baseline)))
    return connectsResult(job.params.connects, measured)
  })

/**
 * The idle workload: warms the code paths with 8 connections made by `open`
 * (closed again), then measures memory around `idleConns` open ones.
 */
export const idleGrowth = <E, R>(
  job: Job,
  open: Effect.Effect<unknown, E, R | Scope.Scope>
): Effect.Effect<Result, E, Exclude<R, Scope.Scope>> =>
  Effect.gen(function*() {
    const p = job.params
    const baseline = openTcpHandles()
    yield* Effect.scoped(Effect.forEach(Array.from({ length: 8 }), () => open))
    yield* handlesClosed(baseline)
    return yield* Effect.scoped(Effect.gen(function*() {
      const before = yield* Effect.promise(() => settledMemory(50))
      const t0 = performance.now()
      yield* Effect.forEach(Array.from({ length: p.idleConns }), () => open, { concurrency: p.inFlight, discard: true })
      const elapsedMs = performance.now() - t0
      const after = yield* Effect.promise(() => settledMemory(200))
      return perConnection(before, after, p.idleConns, elapsedMs)
    }))
  })
