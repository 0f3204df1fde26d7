/**
 * The waiting primitives every blocking call is built on: `attempt` (try,
 * then wait until a deadline, in one step), `startTimer` (the one place a
 * deadline becomes a timer) and `Lane` (one operation at a time, in order).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { attempt, Lane, type Turn } from "../src/internal/wait.ts"

const timedOut = () => "TimedOut" as const

/** An operation that completes when `finish` is called, and records whether it was abandoned. */
const pending = () => {
  const state = { abandoned: 0, finish: (_: string) => {} }
  const effect = (deadline: number) =>
    attempt<string, never, "TimedOut">(deadline, timedOut, (resume) => {
      state.finish = (value) => resume(Effect.succeed(value))
      return () => {
        state.abandoned += 1
      }
    })
  return { state, effect }
}

describe("attempt", () => {
  for (const deadline of [0, -1, Number.MAX_SAFE_INTEGER]) {
    it.effect(`completes at once when the operation does, with deadline ${deadline}, abandoning nothing`, () =>
      Effect.gen(function*() {
        let abandoned = 0
        const value = yield* attempt<string, never, "TimedOut">(deadline, timedOut, (resume) => {
          resume(Effect.succeed("now"))
          return () => {
            abandoned += 1
          }
        })
        assert.strictEqual(value, "now")
        assert.strictEqual(abandoned, 0)
      }))
  }

  it.effect("deadline 0: what did not complete at once is abandoned and fails", () =>
    Effect.gen(function*() {
      const { effect, state } = pending()
      const error = yield* Effect.flip(effect(0))
      assert.strictEqual(error, "TimedOut")
      assert.strictEqual(state.abandoned, 1)
    }))

  it.effect("a past deadline: abandoned and fails without waiting", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("1 second")
      const { effect, state } = pending()
      assert.strictEqual(yield* Effect.flip(effect(500)), "TimedOut")
      assert.strictEqual(state.abandoned, 1)
    }))

  it.effect("a deadline waits on the fiber's clock (TestClock), then abandons", () =>
    Effect.gen(function*() {
      const { effect, state } = pending()
      const fiber = yield* Effect.forkChild(Effect.flip(effect(10_000)))
      yield* TestClock.adjust("9999 millis")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust("1 milli")
      assert.strictEqual(yield* Fiber.join(fiber), "TimedOut")
      assert.strictEqual(state.abandoned, 1)
      // A completion after the timeout is ignored.
      state.finish("late")
    }))

  it.effect("deadline -1 waits for the completion, however long", () =>
    Effect.gen(function*() {
      const { effect, state } = pending()
      const fiber = yield* Effect.forkChild(effect(-1))
      yield* TestClock.adjust("3650 days")
      assert.isUndefined(fiber.pollUnsafe())
      state.finish("done")
      assert.strictEqual(yield* Fiber.join(fiber), "done")
      assert.strictEqual(state.abandoned, 0)
    }))

  it.effect("interruption abandons the operation once, and a later completion is ignored", () =>
    Effect.gen(function*() {
      const { effect, state } = pending()
      const fiber = yield* Effect.forkChild(effect(-1))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(fiber)))
      assert.strictEqual(state.abandoned, 1)
      state.finish("late")
      assert.strictEqual(state.abandoned, 1)
    }))
})

describe("Lane", () => {
  const turn = (log: Array<string>, name: string, onStart?: () => void): Turn => ({
    start: () => {
      log.push(name)
      onStart?.()
    }
  })

  it("runs turns one at a time, in the order they entered; a queued turn can leave before it starts", () => {
    const lane = new Lane()
    const log: Array<string> = []
    const a = turn(log, "a")
    const b = turn(log, "b")
    const c = turn(log, "c")
    lane.enter(a)
    lane.enter(b)
    lane.enter(c)
    assert.deepStrictEqual(log, ["a"])
    lane.leave(b)
    lane.leave(a)
    assert.deepStrictEqual(log, ["a", "c"])
    lane.leave(c)
    assert.isTrue(lane.idle)
  })

  it("100,000 turns that each finish as they start run in a loop, not by recursion", () => {
    const lane = new Lane()
    let done = 0
    const blocker: Turn = { start: () => {} }
    lane.enter(blocker)
    for (let i = 0; i < 100_000; i++) {
      const self: Turn = {
        start: () => {
          done += 1
          lane.leave(self)
        }
      }
      lane.enter(self)
    }
    lane.leave(blocker)
    assert.strictEqual(done, 100_000)
    assert.isTrue(lane.idle)
  })

  it("a turn entering while the lane drains queues behind those already waiting", () => {
    const lane = new Lane()
    const log: Array<string> = []
    const first: Turn = { start: () => log.push("first") }
    lane.enter(first)
    const late = turn(log, "late")
    const second = turn(log, "second", () => {
      lane.enter(late)
      lane.leave(second)
    })
    const third = turn(log, "third")
    lane.enter(second)
    lane.enter(third)
    lane.leave(first)
    assert.deepStrictEqual(log, ["first", "second", "third"])
    lane.leave(third)
    assert.deepStrictEqual(log, ["first", "second", "third", "late"])
  })
})
