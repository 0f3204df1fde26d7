import { Clock, Duration, Effect, Exit, Fiber } from "effect"
import type { Deadline } from "../Deadline.ts"

/**
 * Runs `effect` until `deadline`. Past deadlines (and `0`) fail at once with
 * `onTimeout()`: callers try the non-blocking path before they get here.
 * The clock is read only on this slow path.
 */
export const bounded = <A, E, E2, R>(
  effect: Effect.Effect<A, E, R>,
  deadline: Deadline,
  onTimeout: () => E2
): Effect.Effect<A, E | E2, R> => {
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

/**
 * Calls `fire` once `millis` have passed on `fiber`'s clock, unless the
 * returned function cancels it first. This is the one place a deadline
 * becomes a timer: on the live clock a plain Node timer (a fiber per wait
 * would cost more than most waits), on any other clock (`TestClock`) that
 * clock's own `sleep` in a fiber of the waiter's context, so virtual time
 * decides, through the same waits production runs.
 */
export const startTimer = (
  fiber: Fiber.Fiber<unknown, unknown> | undefined,
  millis: number,
  fire: () => void
): () => void => {
  const clock = fiber === undefined ? liveClock : fiber.getRef(Clock.Clock)
  if (clock === liveClock && millis <= MAX_TIMER_MILLIS) {
    const timer = setTimeout(fire, millis)
    return () => clearTimeout(timer)
  }
  const sleep = clock.sleep(Duration.millis(millis))
  const sleeper = fiber === undefined ? Effect.runFork(sleep) : Effect.runForkWith(fiber.context)(sleep)
  sleeper.addObserver((exit) => {
    if (Exit.isSuccess(exit)) fire()
  })
  return () => sleeper.interruptUnsafe()
}

/** Completes a wait with its outcome; only the first call counts. */
export type Resume<A, E> = (effect: Effect.Effect<A, E>) => void

/**
 * Tries an operation, then waits for it until `deadline`: `start` runs at
 * once, inside the same step of the fiber, and may complete by calling
 * `resume` before it returns; otherwise it returns the function that
 * abandons the operation, called when the deadline passes or the fiber is
 * interrupted. Deadline `0` (or a past one) abandons what did not complete
 * at once and fails with `onTimeout()`.
 *
 * Starting and registering the abandon function in one step is the point:
 * an operation that took a gate or moved bytes can never be left behind by
 * an interruption or a yield between the two.
 */
export const attempt = <A, E, E2>(
  deadline: Deadline,
  onTimeout: () => E2,
  start: (resume: Resume<A, E>) => () => void
): Effect.Effect<A, E | E2> =>
  Effect.callback<A, E | E2>((resume) => {
    let settled = false
    let cancelTimer: (() => void) | undefined
    const abandon = start((effect) => {
      if (settled) return
      settled = true
      cancelTimer?.()
      resume(effect)
    })
    if (settled) return
    const timeOut = () => {
      if (settled) return
      settled = true
      abandon()
      resume(Effect.fail(onTimeout()))
    }
    if (deadline !== -1) {
      const fiber = Fiber.getCurrent() ?? undefined
      const left = deadline === 0 ? 0 : deadline - currentMillis(fiber)
      if (left <= 0) return timeOut()
      cancelTimer = startTimer(fiber, left, timeOut)
    }
    return Effect.sync(() => {
      if (settled) return
      settled = true
      cancelTimer?.()
      abandon()
    })
  })

const currentMillis = (fiber: Fiber.Fiber<unknown, unknown> | undefined): number =>
  (fiber === undefined ? liveClock : fiber.getRef(Clock.Clock)).currentTimeMillisUnsafe()

/**
 * Waits for a callback-style event until `deadline`. Unlike `attempt`, a
 * past deadline (and `0`) fails at once without registering anything: for
 * waits that start something (a connect) or that have nothing to try.
 */
export const awaitEvent = <A, E, E2>(
  deadline: Deadline,
  onTimeout: () => E2,
  register: (resume: Resume<A, E>) => () => void
): Effect.Effect<A, E | E2> => {
  if (deadline === 0) return Effect.fail(onTimeout())
  if (deadline === -1) return attempt(deadline, onTimeout, register)
  return Effect.suspend(() =>
    deadline <= currentMillis(Fiber.getCurrent() ?? undefined)
      ? Effect.fail(onTimeout())
      : attempt(deadline, onTimeout, register)
  )
}

/**
 * One direction's queue of operations: they run one at a time in the order
 * they entered, each from `start` until it calls `leave`. An operation
 * enters and starts in the same synchronous step, so nothing can take its
 * turn between a check and an action. Operations that complete at once are
 * run in a loop, never by recursion.
 */
export class Lane {
  private current: Turn | undefined
  /** Waiting turns from `head` on: taking one is a step of `head`, not a shift of the array. */
  private queue: Array<Turn> = []
  private head = 0
  private draining = false

  /** Whether no operation runs or waits. */
  get idle(): boolean {
    return this.current === undefined && this.head === this.queue.length
  }

  enter(turn: Turn): void {
    if (this.idle) {
      this.current = turn
      turn.start()
    } else {
      this.queue.push(turn)
    }
  }

  /** Ends `turn` (or takes it out of the queue if it never started); the next one starts. */
  leave(turn: Turn): void {
    if (this.current !== turn) {
      const index = this.queue.indexOf(turn, this.head)
      if (index !== -1) this.queue.splice(index, 1)
      return
    }
    this.current = undefined
    if (this.draining) return
    this.draining = true
    try {
      while (this.current === undefined) {
        const next = this.next()
        if (next === undefined) break
        this.current = next
        next.start()
      }
    } finally {
      this.draining = false
    }
  }

  private next(): Turn | undefined {
    if (this.head === this.queue.length) {
      if (this.head > 0) {
        this.queue = []
        this.head = 0
      }
      return undefined
    }
    const turn = this.queue[this.head]
    this.head += 1
    // Drop what was taken once it is most of the array.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
    return turn
  }
}

/** An operation in a `Lane`. */
export interface Turn {
  start(): void
}

interface Waiter {
  granted: boolean
  wake: () => void
}

/**
 * A FIFO mutex around an effect: concurrent callers run one after another
 * in call order. Taking a free gate is synchronous; only contention
 * suspends, and then within the caller's deadline.
 */
export class Gate {
  private busy = false
  private readonly waiters: Array<Waiter> = []
  private readonly releaseEffect = Effect.sync(() => this.release())

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
    const waiting = awaitEvent<void, never, E2>(deadline, onTimeout, (resume) => {
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

  private release(): void {
    const next = this.waiters.shift()
    if (next === undefined) {
      this.busy = false
      return
    }
    next.granted = true
    next.wake()
  }
}
