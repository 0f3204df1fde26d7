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

const duration = (input: Duration.Input | undefined, fallback: Duration.Duration): Option.Option<Duration.Duration> =>
  input === undefined
    ? Option.some(fallback)
    : Option.filter(Duration.fromInput(input), (d) => !Duration.isNegative(d) && Duration.isFinite(d))

/** Checks socket settings, filling in defaults (`noDelay` on: exact request/response traffic suffers from Nagle). */
export const resolveSettings = (
  options: SocketSettings | undefined,
  syscall: string,
  address?: string
): Result.Result<ResolvedSettings, TcpError.InvalidArgument> => {
  const noDelay = options?.noDelay ?? true
  if (typeof noDelay !== "boolean") return Result.fail(TcpError.invalid(syscall, "noDelay must be a boolean", address))
  const closeTimeout = duration(options?.closeTimeout, defaultCloseTimeout)
  if (Option.isNone(closeTimeout)) {
    return Result.fail(TcpError.invalid(syscall, "closeTimeout must be a finite, non-negative duration", address))
  }
  const keepAliveInput = options?.keepAlive ?? false
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
