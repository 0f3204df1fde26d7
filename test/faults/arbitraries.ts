/**
 * fast-check pieces shared by the fuzzed fault suites (bad-input,
 * layer-options, interrupt): generated values tagged with whether the
 * documentation makes them valid, options objects built from tagged fields,
 * the run count and seed taken from the environment, and a property whose
 * check is an Effect.
 */
import { Effect, Exit } from "effect"
import type { Scope } from "effect"
import fc from "fast-check"

// ----------------------------------------------------------- run settings

/** Runs per property at the most: `FAULTS_RUNS` widens or narrows a run (200 by default). */
export const RUNS = Number(process.env.FAULTS_RUNS ?? 200)
/** `FAULTS_SEED` replays a run: fast-check prints the seed of a failure. */
const SEED = process.env.FAULTS_SEED === undefined ? {} : { seed: Number(process.env.FAULTS_SEED) }

/** fast-check's parameters for a property of `numRuns` runs (capped at `RUNS`), seeded when asked. */
export const params = (numRuns: number) => ({ numRuns: Math.min(numRuns, RUNS), ...SEED })

// ---------------------------------------------------------- tagged values

/** A generated value and whether it is valid input. */
export interface V<T = unknown> {
  readonly value: T
  readonly ok: boolean
}

/** Values from `arb`, all valid. */
export const good = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<V<T>> => arb.map((value) => ({ value, ok: true }))

/** Values from `arb`, all invalid. */
export const bad = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<V<T>> => arb.map((value) => ({ value, ok: false }))

/** A valid value two times in three, an invalid one the third. */
export const either = <A, B>(valid: fc.Arbitrary<A>, invalid: fc.Arbitrary<B>): fc.Arbitrary<V> =>
  fc.oneof({ arbitrary: good<unknown>(valid), weight: 2 }, { arbitrary: bad<unknown>(invalid), weight: 1 })

/** An option left out: `undefined`, always valid (the types say `T | undefined`). */
export const leftOut = good(fc.constant(undefined))

/** A tagged field from `arb`, or left out. */
export const optional = (arb: fc.Arbitrary<V>): fc.Arbitrary<V> => fc.oneof(arb, leftOut)

/** An options object of optional tagged fields; valid when every field is. */
export const optionsOf = (fields: Record<string, fc.Arbitrary<V>>): fc.Arbitrary<V<Record<string, unknown>>> =>
  fc.record(fields, { requiredKeys: [], noNullPrototype: true }).map((record) => {
    const entries = Object.entries(record) as Array<[string, V]>
    return {
      value: Object.fromEntries(entries.map(([k, v]) => [k, v.value])),
      ok: entries.every(([, v]) => v.ok)
    }
  })

/**
 * A generated value as a label: JSON, with bigints, non-finite numbers and
 * `undefined` spelled out; never a throw (a cycle, a symbol or an object
 * without a prototype falls back to its `Object.prototype.toString`).
 */
export const show = (u: unknown): string => {
  try {
    return JSON.stringify(u, (_, v: unknown) =>
      typeof v === "bigint"
        ? `${v}n`
        : typeof v === "number" && !Number.isFinite(v)
        ? String(v)
        : v === undefined
        ? "undefined"
        : v) ?? String(u)
  } catch {
    return Object.prototype.toString.call(u)
  }
}

// ------------------------------------------------------------- properties

/**
 * `fc.assert` over an Effect: each generated value's check runs in a scope
 * of its own, with the caller's services; a check that fails or dies is a
 * counterexample.
 */
export const property = <T, R>(
  arb: fc.Arbitrary<T>,
  numRuns: number,
  check: (value: T) => Effect.Effect<void, unknown, R>
): Effect.Effect<void, never, Exclude<R, Scope.Scope>> =>
  Effect.gen(function*() {
    const run = Effect.runPromiseExitWith(yield* Effect.context<Exclude<R, Scope.Scope>>())
    yield* Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(arb, async (value) => {
          const exit = await run(Effect.scoped(check(value)))
          if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
        }),
        params(numRuns)
      )
    )
  })
