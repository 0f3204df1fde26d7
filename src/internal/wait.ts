import { Clock, Effect, Exit } from "effect"
import type { Fiber } from "effect"
import type { Deadline } from "../Deadline.ts"

/**
 * Runs `effect` until `deadline`. Past deadlines (and `0`) fail at once with
 * `onTimeout()`: callers try the non-blocking path before they get here.
 * The clock is read only on this slow path.
 */
export const bounded = <A, E, E2>(
  effect: Effect.Effect<A, E>,
  deadline: Deadline,
  onTimeout: () => E2
): Effect.Effect<A, E | E2> => {
  if (deadline === -1) return effect
  if (deadline === 0) return Effect.fail(onTimeout())
  return Effect.flatMap(Clock.currentTimeMillis, (now) =>
    deadline <= now
      ? Effect.fail(onTimeout())
      : Effect.timeoutOrElse(effect, { duration: deadline - now, orElse: () => Effect.fail(onTimeout()) }))
}

/** Node fires timers longer than this at once. */
const MAX_TIMER_MILLIS = 2 ** 31 - 1

/**
 * The clock fibers use unless a layer provides another (`TestClock`, say).
 * Its `sleep` is a plain `setTimeout`, so a wait on it may set the timer
 * itself.
 */
const liveClock: Clock.Clock = Effect.runSync(Effect.withFiber((fiber) => Effect.succeed(fiber.getRef(Clock.Clock))))

/** Whether `fiber` may wait `millis` on a plain Node timer: it runs on the live clock, and Node can time that long. */
export const fitsNodeTimer = (fiber: Fiber.Fiber<unknown, unknown>, millis: number): boolean =>
  fiber.getRef(Clock.Clock) === liveClock && millis <= MAX_TIMER_MILLIS

/**
 * Waits for a callback-style event until `deadline`. `register` gets the
 * function that completes the wait and returns the cleanup to run when the
 * wait is abandoned (timeout or interruption). A past deadline (and `0`)
 * fails at once without registering: callers try the non-blocking path
 * before they get here.
 *
 * On the live clock the deadline is a timer inside the same
 * `Effect.callback`: `Effect.timeoutOrElse` would race two forked fibers
 * for every wait. Other clocks get exactly that race, so virtual time
 * still decides.
 */
export const suspend = <A, E, E2>(
  deadline: Deadline,
  onTimeout: () => E2,
  register: (resume: (effect: Effect.Effect<A, E>) => void) => () => void
): Effect.Effect<A, E | E2> => {
  if (deadline === -1) return untimed(register)
  if (deadline === 0) return Effect.fail(onTimeout())
  return Effect.withFiber((fiber) => {
    const left = deadline - fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
    if (left <= 0) return Effect.fail(onTimeout())
    return fitsNodeTimer(fiber, left) ? timed(register, left, onTimeout) : bounded(untimed(register), deadline, onTimeout)
  })
}

const untimed = <A, E>(register: (resume: (effect: Effect.Effect<A, E>) => void) => () => void) =>
  Effect.callback<A, E>((resume) => {
    const cleanup = register(resume)
    return Effect.sync(cleanup)
  })

const timed = <A, E, E2>(
  register: (resume: (effect: Effect.Effect<A, E>) => void) => () => void,
  millis: number,
  onTimeout: () => E2
) =>
  Effect.callback<A, E | E2>((resume) => {
    let settled = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const cleanup = register((effect) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resume(effect)
    })
    if (settled) return
    timer = setTimeout(() => {
      if (settled) return
      settled = true
      cleanup()
      resume(Effect.fail(onTimeout()))
    }, millis)
    return Effect.sync(() => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      cleanup()
    })
  })

interface Waiter {
  granted: boolean
  wake: () => void
}

/**
 * A FIFO mutex: concurrent sends (or receives) on one socket run one after
 * another in call order. Taking a free gate is synchronous; only contention
 * suspends, and then within the caller's deadline.
 */
export class Gate {
  private busy = false
  private readonly waiters: Array<Waiter> = []
  private readonly releaseEffect = Effect.sync(() => this.release())

  /** Whether nobody holds the gate or waits for it. */
  get idle(): boolean {
    return !this.busy
  }

  run<A, E, E2>(effect: Effect.Effect<A, E>, deadline: Deadline, onTimeout: () => E2): Effect.Effect<A, E | E2> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        if (!this.busy) {
          this.busy = true
          return Effect.ensuring(restore(effect), this.releaseEffect)
        }
        return Effect.flatMap(
          this.wait(restore, deadline, onTimeout),
          () => Effect.ensuring(restore(effect), this.releaseEffect)
        )
      })
    )
  }

  private wait<E2>(
    restore: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>,
    deadline: Deadline,
    onTimeout: () => E2
  ): Effect.Effect<void, E2> {
    const waiter: Waiter = { granted: false, wake: () => {} }
    const waiting = suspend<void, never, E2>(deadline, onTimeout, (resume) => {
      waiter.wake = () => resume(Effect.void)
      this.waiters.push(waiter)
      return () => {
        const index = this.waiters.indexOf(waiter)
        if (index !== -1) this.waiters.splice(index, 1)
      }
    })
    // A grant can race a timeout or an interruption: whoever loses the race
    // must not keep the gate, so a granted but abandoned wait passes it on.
    return Effect.onExit(restore(waiting), (exit) =>
      Exit.isFailure(exit) && waiter.granted ? this.releaseEffect : Effect.void)
  }

  /**
   * Takes the gate when it is free, for a caller that waits by itself (one
   * `Effect.callback`) rather than through `run`. Whoever got `true` must
   * call `release` exactly once.
   */
  tryHold(): boolean {
    if (this.busy) return false
    this.busy = true
    return true
  }

  /** Passes the gate to the next waiter, or frees it. */
  release(): void {
    const next = this.waiters.shift()
    if (next === undefined) {
      this.busy = false
      return
    }
    next.granted = true
    next.wake()
  }
}
