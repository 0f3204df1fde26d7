import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { TestClock } from "effect/testing"
import { Deadline } from "../src/index.ts"
import { checkFdLeaks } from "./helpers.ts"

/** Runs `Deadline.resolve` expecting `InvalidArgument` with the given syscall. */
const expectInvalid = (options: Deadline.Options, syscall = "recv") =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Deadline.resolve(options, syscall, "127.0.0.1:9"))
    assert.strictEqual(error._tag, "InvalidArgument", `for ${String(options.deadline)} / ${String(options.timeout)}`)
    assert.strictEqual(error.errno, "EINVAL")
    assert.strictEqual(error.syscall, syscall)
    assert.strictEqual(error.address, "127.0.0.1:9")
    assert.isTrue(error.message.length > 0)
  })

describe("Deadline", () => {
  checkFdLeaks()

  describe("now", () => {
    it.effect("follows TestClock", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(1_000_000)
        assert.strictEqual(yield* Deadline.now, 1_000_000)
        yield* TestClock.adjust("1 second")
        assert.strictEqual(yield* Deadline.now, 1_001_000)
        yield* TestClock.adjust("250 millis")
        assert.strictEqual(yield* Deadline.now, 1_001_250)
      }))

    it.effect("does not move while TestClock stands still", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(5_000)
        const a = yield* Deadline.now
        const b = yield* Deadline.now
        assert.strictEqual(a, 5_000)
        assert.strictEqual(b, 5_000)
      }))

    it.live("is wall-clock milliseconds under the live clock", () =>
      Effect.gen(function*() {
        const before = Date.now()
        const t = yield* Deadline.now
        const after = Date.now()
        assert.isAtLeast(t, before)
        assert.isAtMost(t, after)
      }))
  })

  describe("after", () => {
    it.effect("is now plus the duration", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(10_000)
        assert.strictEqual(yield* Deadline.after("2 seconds"), 12_000)
        assert.strictEqual(yield* Deadline.after(Duration.millis(1)), 10_001)
        assert.strictEqual(yield* Deadline.after(0), 10_000)
        yield* TestClock.adjust("1 minute")
        assert.strictEqual(yield* Deadline.after("500 millis"), 70_500)
      }))
  })

  describe("constants", () => {
    it("immediate is 0, never is -1", () => {
      assert.strictEqual(Deadline.immediate, 0)
      assert.strictEqual(Deadline.never, -1)
    })
  })

  describe("resolve", () => {
    it.effect("no options means never (-1)", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(10_000)
        assert.strictEqual(yield* Deadline.resolve(undefined, "recv"), -1)
        assert.strictEqual(yield* Deadline.resolve({}, "recv"), -1)
        assert.strictEqual(yield* Deadline.resolve({ deadline: undefined, timeout: undefined }, "recv"), -1)
      }))

    it.effect("a deadline alone is returned as is", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(10_000)
        assert.strictEqual(yield* Deadline.resolve({ deadline: 12_345 }, "recv"), 12_345)
        assert.strictEqual(yield* Deadline.resolve({ deadline: -1 }, "recv"), -1)
        // A past deadline is still a valid deadline (the call times out at once).
        assert.strictEqual(yield* Deadline.resolve({ deadline: 1 }, "recv"), 1)
        // Fractional milliseconds are allowed.
        assert.strictEqual(yield* Deadline.resolve({ deadline: 12_345.5 }, "recv"), 12_345.5)
      }))

    it.effect("deadline 0 stays 0", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(10_000)
        assert.strictEqual(yield* Deadline.resolve({ deadline: 0 }, "recv"), 0)
        // 0 is earlier than any timeout.
        assert.strictEqual(yield* Deadline.resolve({ deadline: 0, timeout: "1 second" }, "recv"), 0)
      }))

    it.effect("a timeout alone is now + timeout", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(10_000)
        assert.strictEqual(yield* Deadline.resolve({ timeout: "1 second" }, "recv"), 11_000)
        assert.strictEqual(yield* Deadline.resolve({ timeout: 250 }, "recv"), 10_250)
        assert.strictEqual(yield* Deadline.resolve({ timeout: Duration.minutes(1) }, "recv"), 70_000)
        assert.strictEqual(yield* Deadline.resolve({ timeout: "0 millis" }, "recv"), 10_000)
        yield* TestClock.adjust("5 seconds")
        assert.strictEqual(yield* Deadline.resolve({ timeout: "1 second" }, "recv"), 16_000)
      }))

    it.effect("an infinite timeout never times out", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(10_000)
        assert.strictEqual(yield* Deadline.resolve({ timeout: Duration.infinity }, "recv"), -1)
        assert.strictEqual(yield* Deadline.resolve({ timeout: "Infinity" }, "recv"), -1)
        assert.strictEqual(yield* Deadline.resolve({ deadline: 15_000, timeout: Duration.infinity }, "recv"), 15_000)
      }))

    it.effect("both: the earlier wins", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(10_000)
        // timeout earlier
        assert.strictEqual(yield* Deadline.resolve({ deadline: 20_000, timeout: "1 second" }, "recv"), 11_000)
        // deadline earlier
        assert.strictEqual(yield* Deadline.resolve({ deadline: 10_500, timeout: "1 second" }, "recv"), 10_500)
        // deadline -1 (never) loses to any timeout
        assert.strictEqual(yield* Deadline.resolve({ deadline: -1, timeout: "1 second" }, "recv"), 11_000)
        // equal
        assert.strictEqual(yield* Deadline.resolve({ deadline: 11_000, timeout: "1 second" }, "recv"), 11_000)
      }))

    it.effect("invalid deadlines fail with InvalidArgument", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(10_000)
        yield* expectInvalid({ deadline: Number.NaN })
        yield* expectInvalid({ deadline: -2 })
        yield* expectInvalid({ deadline: -0.5 })
        yield* expectInvalid({ deadline: Number.POSITIVE_INFINITY })
        yield* expectInvalid({ deadline: Number.NEGATIVE_INFINITY })
        yield* expectInvalid({ deadline: "100" as never }, "connect")
        // An invalid deadline is reported even when the timeout is fine.
        yield* expectInvalid({ deadline: Number.NaN, timeout: "1 second" })
      }))

    it.effect("invalid timeouts fail with InvalidArgument", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(10_000)
        yield* expectInvalid({ timeout: "nonsense" as never })
        yield* expectInvalid({ timeout: -5 })
        yield* expectInvalid({ timeout: "-5 seconds" as never })
        yield* expectInvalid({ timeout: Duration.millis(-1) })
        yield* expectInvalid({ timeout: "-Infinity" })
        // An invalid timeout is reported even when the deadline is fine.
        yield* expectInvalid({ deadline: 20_000, timeout: "nonsense" as never }, "send")
      }))

    it.effect("the address is optional in the error", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Deadline.resolve({ deadline: -2 }, "acquire"))
        assert.strictEqual(error._tag, "InvalidArgument")
        assert.strictEqual(error.syscall, "acquire")
        assert.isUndefined(error.address)
      }))
  })

  describe("earlier", () => {
    it("picks the earlier time, -1 being later than any", () => {
      assert.strictEqual(Deadline.earlier(-1, 5000), 5000)
      assert.strictEqual(Deadline.earlier(5000, -1), 5000)
      assert.strictEqual(Deadline.earlier(-1, -1), -1)
      assert.strictEqual(Deadline.earlier(3000, 5000), 3000)
      assert.strictEqual(Deadline.earlier(5000, 3000), 3000)
      assert.strictEqual(Deadline.earlier(4000, 4000), 4000)
    })

    it("0 (immediate) is earlier than any time and than never", () => {
      assert.strictEqual(Deadline.earlier(0, 5000), 0)
      assert.strictEqual(Deadline.earlier(5000, 0), 0)
      assert.strictEqual(Deadline.earlier(0, -1), 0)
      assert.strictEqual(Deadline.earlier(-1, 0), 0)
    })
  })
})
