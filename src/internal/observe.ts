import { Effect, Metric } from "effect"
import type { Context, Exit, Fiber } from "effect"
import type * as TcpError from "../TcpError.ts"
import * as TcpMetrics from "../TcpMetrics.ts"
import type { Pool } from "./pool.ts"
import { connectionOf } from "./tcpSocket.ts"

/**
 * Sets an attribute on `fiber`'s current span, as `Effect.annotateCurrentSpan`
 * does, from inside a step the fiber is already taking.
 */
export const annotateSpan = (fiber: Fiber.Fiber<unknown, unknown>, key: string, value: unknown): void => {
  const span = fiber.cache.span
  if (span !== undefined && span._tag === "Span" && span.status._tag !== "Ended") span.attribute(key, value)
}

/**
 * A connect or accept as observability sees it: the outcome on the call's
 * span (`tcp.outcome`: `connected` or the error's tag, `tcp.peer`), and the
 * metrics when `TcpMetrics` is on. One step around the call: the span and
 * the metrics switch are read once, at its start, and its exit handled in
 * one place.
 */
export const observed = <A, E extends { readonly _tag: TcpError.Tag }, R>(
  direction: "connect" | "accept",
  effect: Effect.Effect<A, E, R>,
  pool: Pool
): Effect.Effect<A, E, R> =>
  Effect.withFiber((fiber) => {
    // The call's own span: the one `Effect.annotateCurrentSpan` would find at its end.
    const span = fiber.cache.span
    const meter = fiber.getRef(TcpMetrics.Enabled) ? metered<A, E>(direction, fiber.context, pool) : undefined
    return Effect.onExit(effect, (exit) => {
      const failed = exit._tag === "Success" ? undefined : exit.cause.reasons.find((r) => r._tag === "Fail")
      if (span !== undefined && span._tag === "Span" && span.status._tag !== "Ended") {
        if (exit._tag === "Success") {
          span.attribute("tcp.outcome", direction === "connect" ? "connected" : "accepted")
          // The peer as the connection already knows it: no address parsing per connect.
          span.attribute("tcp.peer", connectionOf(exit.value)?.address ?? "")
        } else if (failed !== undefined && failed._tag === "Fail") {
          span.attribute("tcp.outcome", failed.error._tag)
        }
      }
      meter?.(exit, failed !== undefined && failed._tag === "Fail" ? failed.error : undefined)
      return Effect.void
    })
  })

/** What a connection reports when it is released. */
interface Released {
  readonly bytesSent: number
  readonly bytesReceived: number
}

/**
 * The metrics of one connect or accept, started now: its outcome and
 * duration, and the connection's bytes when it is released (recorded then
 * with `context`, since release happens outside any fiber).
 */
const metered = <A, E extends { readonly _tag: TcpError.Tag }>(
  direction: "connect" | "accept",
  context: Context.Context<never>,
  pool: Pool
): (exit: Exit.Exit<A, E>, error: E | undefined) => void => {
  const started = performance.now()
  const pools = () => {
    const figures = pool.stats()
    TcpMetrics.poolSlotsInUse.updateUnsafe(figures.inUse, context)
    TcpMetrics.poolWaiters.updateUnsafe(figures.waiting, context)
  }
  const released = (figures: Released) => {
    TcpMetrics.connectionsActive.modifyUnsafe(-1, context)
    TcpMetrics.bytesSent.updateUnsafe(figures.bytesSent, context)
    TcpMetrics.bytesReceived.updateUnsafe(figures.bytesReceived, context)
    pools()
  }
  return (exit, error) => {
    if (exit._tag === "Success") {
      Metric.withAttributes(TcpMetrics.connectionsOpened, { direction }).updateUnsafe(1, context)
      TcpMetrics.connectionsActive.modifyUnsafe(1, context)
      if (direction === "connect") TcpMetrics.connectDuration.updateUnsafe(performance.now() - started, context)
      pools()
      const conn = connectionOf(exit.value)
      if (conn !== undefined) conn.reportFigures = released
      return
    }
    if (error !== undefined) {
      Metric.withAttributes(TcpMetrics.connectionsFailed, { tag: error._tag, direction }).updateUnsafe(1, context)
    }
    pools()
  }
}
