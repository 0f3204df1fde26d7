import { Duration, Option, Result } from "effect"
import type * as Net from "node:net"
import * as TcpError from "../TcpError.ts"

/** Socket settings as `connect` and `accept` take them. */
export interface SocketSettings {
  readonly noDelay?: boolean | undefined
  readonly keepAlive?: boolean | Duration.Input | undefined
  readonly closeTimeout?: Duration.Input | undefined
}

export interface ResolvedSettings {
  readonly noDelay: boolean
  /** Initial keep-alive delay in ms, or `false`. */
  readonly keepAlive: number | false
  readonly closeTimeout: Duration.Duration
}

const defaultCloseTimeout = Duration.seconds(1)

/**
 * An option's value, or `fallback` when it was left out. Only `undefined`
 * means "left out": `null` is a value like any other, and gets checked.
 */
export const orDefault = <A, B>(value: A | undefined, fallback: B): A | B => value === undefined ? fallback : value

/** An integer `min` or more. */
export const isCount = (n: unknown, min: number): n is number =>
  typeof n === "number" && Number.isSafeInteger(n) && n >= min

/**
 * A listener's queues (`TcpListener.ListenOptions`), the same on every
 * network: `backlog` (default 511) at least 1, `pending` (default
 * `backlog`) at least 0.
 */
export const listenSettings = (
  options: {
    readonly backlog?: number | undefined
    readonly pending?: number | undefined
    readonly reusePort?: boolean | undefined
  } | undefined,
  text: string
): Result.Result<
  { readonly backlog: number; readonly pending: number; readonly reusePort: boolean },
  TcpError.InvalidArgument
> => {
  const backlog = orDefault(options?.backlog, 511)
  const pending = orDefault(options?.pending, backlog)
  const reusePort = orDefault(options?.reusePort, false)
  if (typeof reusePort !== "boolean") return Result.fail(TcpError.invalid("listen", "reusePort must be a boolean", text))
  return isCount(backlog, 1) && isCount(pending, 0)
    ? Result.succeed({ backlog, pending, reusePort })
    : Result.fail(TcpError.invalid("listen", "backlog must be >= 1 and pending >= 0", text))
}

/**
 * A duration a caller gave, if it is one: non-negative and not NaN (Effect
 * reads a NaN number as zero, which would turn a typo into "immediately").
 */
export const checkedDuration = (input: unknown): Option.Option<Duration.Duration> => {
  if (typeof input === "number" && Number.isNaN(input)) return Option.none()
  try {
    return Option.filter(Duration.fromInput(input as Duration.Input), (d) => !Duration.isNegative(d))
  } catch {
    // Effect's parser can throw on values no type allows (a Symbol, say): still just invalid.
    return Option.none()
  }
}

const duration = (input: Duration.Input | undefined, fallback: Duration.Duration): Option.Option<Duration.Duration> =>
  input === undefined ? Option.some(fallback) : Option.filter(checkedDuration(input), Duration.isFinite)

/** The settings of a call that gives none: checked once, shared (they are immutable). */
const defaultSettings: Result.Result<ResolvedSettings, never> = Result.succeed({
  noDelay: true,
  keepAlive: false,
  closeTimeout: defaultCloseTimeout
})

/** Checks socket settings, filling in defaults (`noDelay` on: exact request/response traffic suffers from Nagle). */
export const resolveSettings = (
  options: SocketSettings | undefined,
  syscall: string,
  address?: string
): Result.Result<ResolvedSettings, TcpError.InvalidArgument> => {
  if (options?.noDelay === undefined && options?.keepAlive === undefined && options?.closeTimeout === undefined) {
    return defaultSettings
  }
  const noDelay = orDefault(options?.noDelay, true)
  if (typeof noDelay !== "boolean") return Result.fail(TcpError.invalid(syscall, "noDelay must be a boolean", address))
  const closeTimeout = duration(options?.closeTimeout, defaultCloseTimeout)
  if (Option.isNone(closeTimeout)) {
    return Result.fail(TcpError.invalid(syscall, "closeTimeout must be a finite, non-negative duration", address))
  }
  const keepAliveInput = orDefault(options?.keepAlive, false)
  let keepAlive: number | false = false
  if (keepAliveInput === true) keepAlive = 0
  else if (keepAliveInput !== false) {
    const delay = duration(keepAliveInput, Duration.zero)
    if (Option.isNone(delay)) {
      return Result.fail(TcpError.invalid(syscall, "keepAlive must be a boolean or a duration", address))
    }
    keepAlive = Duration.toMillis(delay.value)
  }
  return Result.succeed({ noDelay, keepAlive, closeTimeout: closeTimeout.value })
}

/** Applies the settings to a Node socket (Node defers them until connected). */
export const applySettings = (socket: Net.Socket, settings: ResolvedSettings): void => {
  socket.setNoDelay(settings.noDelay)
  if (settings.keepAlive !== false) socket.setKeepAlive(true, settings.keepAlive)
}

/** What a pool slot's receive buffer may be: 1 KiB up to 1 GiB (Node reads into it through a `uv_buf_t`, whose length is 32 bits). */
export const minBufferSize = 1024
export const maxBufferSize = 2 ** 30

/** The storage pool's settings, checked and filled in. */
export interface PoolSettings {
  readonly slots: number
  readonly bufferSize: number
  readonly onExhausted: "wait" | "fail"
}

const isWhole = (n: unknown, min: number, max: number): n is number =>
  typeof n === "number" && Number.isSafeInteger(n) && n >= min && n <= max

/** A field whose getter or proxy threw: the caller's error like any other bad value, not a defect. */
const unreadable: unique symbol = Symbol("unreadable")

/**
 * A layer's options read field by field, or `undefined` when they are no
 * options object at all (anything but `undefined` or an object).
 */
const fieldsOf = (options: unknown): ((name: string) => unknown) | undefined => {
  if (options === undefined) return () => undefined
  if (typeof options !== "object" || options === null) return undefined
  return (name) => {
    try {
      return Reflect.get(options, name)
    } catch {
      return unreadable
    }
  }
}

/**
 * Checks the storage pool's settings (`TcpStorage.layer`), filling in
 * `defaults`: `slots` a positive safe integer, `bufferSize` an integer from
 * `minBufferSize` through `maxBufferSize`, `onExhausted` `"wait"` or `"fail"`.
 */
export const resolvePool = (
  options: unknown,
  defaults: PoolSettings,
  syscall: string
): Result.Result<PoolSettings, TcpError.InvalidArgument> => {
  const field = fieldsOf(options)
  if (field === undefined) return Result.fail(TcpError.invalid(syscall, `options must be an object, got ${describe(options)}`))
  const slots = orDefault(field("slots"), defaults.slots)
  if (!isWhole(slots, 1, Number.MAX_SAFE_INTEGER)) {
    return Result.fail(TcpError.invalid(syscall, `slots must be a positive integer, got ${describe(slots)}`))
  }
  const bufferSize = orDefault(field("bufferSize"), defaults.bufferSize)
  if (!isWhole(bufferSize, minBufferSize, maxBufferSize)) {
    return Result.fail(TcpError.invalid(
      syscall,
      `bufferSize must be an integer from ${minBufferSize} through ${maxBufferSize} (1 GiB), got ${describe(bufferSize)}`
    ))
  }
  const onExhausted = orDefault(field("onExhausted"), defaults.onExhausted)
  if (onExhausted !== "wait" && onExhausted !== "fail") {
    return Result.fail(TcpError.invalid(syscall, `onExhausted must be "wait" or "fail", got ${describe(onExhausted)}`))
  }
  return Result.succeed({ slots, bufferSize, onExhausted })
}

/** The client layer's defaults, checked. */
export interface ClientSettings {
  /** Bounds a connect that gives neither deadline nor timeout; `undefined`: no bound. */
  readonly connectTimeout: Duration.Duration | undefined
}

/**
 * Checks the client layer's defaults (`TcpClient.layerWith`):
 * `connectTimeout` a non-negative duration, an infinite one meaning none,
 * as a call's own `timeout`.
 */
export const resolveClient = (
  options: unknown,
  syscall: string
): Result.Result<ClientSettings, TcpError.InvalidArgument> => {
  const field = fieldsOf(options)
  if (field === undefined) return Result.fail(TcpError.invalid(syscall, `options must be an object, got ${describe(options)}`))
  const input = field("connectTimeout")
  if (input === undefined) return Result.succeed({ connectTimeout: undefined })
  const duration = checkedDuration(input)
  return Option.isSome(duration)
    ? Result.succeed({ connectTimeout: duration.value })
    : Result.fail(TcpError.invalid(syscall, `connectTimeout must be a non-negative duration, got ${describe(input)}`))
}

/** A value as an error message can show it, kept short whatever it is. */
const describe = (u: unknown): string => {
  if (u === unreadable) return "a value that could not be read"
  let text: string
  try {
    text = typeof u === "string" ? JSON.stringify(u) : typeof u === "bigint" ? `${u}n` : String(u)
  } catch {
    text = "an unprintable value"
  }
  return text.length > 40 ? `${text.slice(0, 40)}…` : text
}

/** The largest descriptor number: a C `int`, which is what Node checks `fd` against too. */
const maxDescriptor = 2 ** 31 - 1

/** Whether `fd` can be a descriptor number: an integer from 0 through 2^31 - 1. */
export const isDescriptor = (fd: unknown): fd is number =>
  typeof fd === "number" && Number.isInteger(fd) && fd >= 0 && fd <= maxDescriptor

/** The message for a `fd` that is not a descriptor number. */
export const badDescriptor = `fd must be a descriptor number (0..${maxDescriptor})`
