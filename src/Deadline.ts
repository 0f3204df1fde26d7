/**
 * Points in time for blocking calls, as libdill has them.
 *
 * A deadline is an absolute time in milliseconds on Effect's `Clock` (so
 * `TestClock` drives it in tests). `0` means "only if possible without
 * waiting", `-1` means "never time out". Every blocking call takes
 * `{ deadline }` and/or `{ timeout }`; when both are given the earlier wins.
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Option } from "effect"
import { checkedDuration } from "./internal/options.ts"
import * as TcpError from "./TcpError.ts"

/**
 * An absolute point in time in milliseconds, `0` (immediate) or `-1` (never).
 *
 * @example
 * ```ts
 * import { Deadline } from "effect-tcp"
 * const d: Deadline.Deadline = Deadline.never
 * ```
 * @since 0.1.0
 */
export type Deadline = number

/**
 * The current time in milliseconds, from Effect's `Clock`: libdill's `now()`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Deadline } from "effect-tcp"
 * const inOneSecond = Effect.map(Deadline.now, (t) => t + 1000)
 * ```
 * @since 0.1.0
 */
export const now: Effect.Effect<number> = Clock.currentTimeMillis

/**
 * The deadline `duration` from now.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Deadline, TcpClient } from "effect-tcp"
 * Effect.flatMap(Deadline.after("2 seconds"), (deadline) => TcpClient.connect("127.0.0.1:6379", { deadline }))
 * ```
 * @since 0.1.0
 */
export const after = (duration: Duration.Input): Effect.Effect<Deadline> =>
  Effect.map(now, (t) => t + Duration.toMillis(duration))

/**
 * Deadline `0`: do the operation only if it can be done without waiting.
 *
 * @example
 * ```ts
 * import { Deadline } from "effect-tcp"
 * import type { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * socket.recv(4, { deadline: Deadline.immediate }) // only bytes already delivered
 * ```
 * @since 0.1.0
 */
export const immediate: Deadline = 0

/**
 * Deadline `-1`: wait as long as it takes.
 *
 * @example
 * ```ts
 * import { Deadline } from "effect-tcp"
 * import type { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * socket.recv(4, { deadline: Deadline.never })
 * ```
 * @since 0.1.0
 */
export const never: Deadline = -1

/**
 * The options every blocking call accepts: an absolute `deadline`, a relative
 * `timeout`, or both (the earlier wins). Neither means `never`.
 *
 * @example
 * ```ts
 * import type { Deadline } from "effect-tcp"
 * const options: Deadline.Options = { timeout: "500 millis" }
 * ```
 * @since 0.1.0
 */
export interface Options {
  readonly deadline?: Deadline | undefined
  readonly timeout?: Duration.Input | undefined
}

const isDeadline = (deadline: unknown): deadline is Deadline =>
  typeof deadline === "number" && Number.isFinite(deadline) && (deadline === -1 || deadline >= 0)

/**
 * Turns `{ deadline, timeout }` into one absolute deadline, failing with
 * `InvalidArgument` for NaN, infinities, values below `-1` other than `-1`
 * itself, and timeouts that are not durations or are negative.
 *
 * @example
 * ```ts
 * import { Deadline } from "effect-tcp"
 * Deadline.resolve({ timeout: "1 second" }, "recv") // Effect of now + 1000
 * ```
 * @since 0.1.0
 */
export const resolve = (
  options: Options | undefined,
  syscall: string,
  address?: string
): Effect.Effect<Deadline, TcpError.InvalidArgument> => {
  const deadline = options?.deadline
  const timeout = options?.timeout
  if (deadline !== undefined && !isDeadline(deadline)) {
    return Effect.fail(TcpError.invalid(syscall, `deadline must be -1, 0 or a time in ms, got ${String(deadline)}`, address))
  }
  if (timeout === undefined) return Effect.succeed(deadline ?? never)
  const duration = checkedDuration(timeout)
  if (Option.isNone(duration)) {
    return Effect.fail(TcpError.invalid(syscall, `timeout must be a non-negative duration`, address))
  }
  if (!Duration.isFinite(duration.value)) return Effect.succeed(deadline ?? never)
  return Effect.map(now, (t) => earlier(deadline ?? never, t + Duration.toMillis(duration.value)))
}

/**
 * The earlier of two deadlines, where `-1` is later than any time.
 *
 * @example
 * ```ts
 * import { Deadline } from "effect-tcp"
 * Deadline.earlier(-1, 5000) // 5000
 * ```
 * @since 0.1.0
 */
export const earlier = (a: Deadline, b: Deadline): Deadline => a === never ? b : b === never ? a : Math.min(a, b)
