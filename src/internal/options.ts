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

/** Checks socket settings, filling in defaults (`noDelay` on: exact request/response traffic suffers from Nagle). */
export const resolveSettings = (
  options: SocketSettings | undefined,
  syscall: string,
  address?: string
): Result.Result<ResolvedSettings, TcpError.InvalidArgument> => {
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
