import { Effect, Metric } from "effect"
import type { Context, Exit } from "effect"
import type * as TcpError from "../TcpError.ts"
import * as TcpMetrics from "../TcpMetrics.ts"
import type { Pool } from "./pool.ts"
import { connectionOf } from "./tcpSocket.ts"

/**
 * A connect or accept as observability sees it: the outcome on the call's
 * span (`tcp.outcome`: `connected` or the error's tag, `tcp.peer`), and the
 * metrics when `TcpMetrics` is on.
 */
export const observed = <A, E extends { readonly _tag: TcpError.Tag }, R>(
  direction: "connect" | "accept",
  effect: Effect.Effect<A, E, R>,
  pool: Pool
): Effect.Effect<A, E, R> =>
  metered(
    direction,
    effect.pipe(
      // The peer as the connection already knows it: no address parsing per connect.
      Effect.tap((socket) =>
        Effect.annotateCurrentSpan({
          "tcp.outcome": direction === "connect" ? "connected" : "accepted",
          "tcp.peer": connectionOf(socket)?.address ?? ""
        })
      ),
      Effect.tapError((error) => Effect.annotateCurrentSpan("tcp.outcome", error._tag))
    ),
    pool
  )

/** What a connection reports when it is released. */
interface Released {
  readonly bytesSent: number
  readonly bytesReceived: number
}

/**
 * The metrics of one connect or accept: its outcome and duration, and the
 * connection's bytes when it is released (recorded then with the context
 * captured now, since release happens outside any fiber). The effect
 * unchanged when metrics are off.
 */
const metered = <A, E extends { readonly _tag: TcpError.Tag }, R>(
  direction: "connect" | "accept",
  effect: Effect.Effect<A, E, R>,
  pool: Pool
): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.service(TcpMetrics.Enabled), (enabled) => {
    if (!enabled) return effect
    return Effect.contextWith((context: Context.Context<never>) => {
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
      return Effect.onExit(effect, (exit: Exit.Exit<A, E>) =>
        Effect.sync(() => {
          if (exit._tag === "Success") {
            Metric.withAttributes(TcpMetrics.connectionsOpened, { direction }).updateUnsafe(1, context)
            TcpMetrics.connectionsActive.modifyUnsafe(1, context)
            if (direction === "connect") TcpMetrics.connectDuration.updateUnsafe(performance.now() - started, context)
            pools()
            const conn = connectionOf(exit.value)
            if (conn !== undefined) conn.reportFigures = released
            return
          }
          const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
          if (reason !== undefined && reason._tag === "Fail") {
            Metric.withAttributes(TcpMetrics.connectionsFailed, { tag: reason.error._tag, direction })
              .updateUnsafe(1, context)
          }
          pools()
        })
      )
    })
  })
