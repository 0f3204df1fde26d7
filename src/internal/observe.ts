import { Effect } from "effect"
import type * as TcpError from "../TcpError.ts"
import * as TcpMetrics from "../TcpMetrics.ts"
import * as TcpSocket from "../TcpSocket.ts"
import type { Pool } from "./pool.ts"

/**
 * A connect or accept as observability sees it: the outcome on the call's
 * span (`tcp.outcome`: `connected` or the error's tag, `tcp.peer`), and the
 * metrics when `TcpMetrics` is on.
 */
export const observed = <E extends { readonly _tag: TcpError.Tag }, R>(
  direction: "connect" | "accept",
  effect: Effect.Effect<TcpSocket.TcpSocket, E, R>,
  pool: Pool
): Effect.Effect<TcpSocket.TcpSocket, E, R> =>
  TcpMetrics.track(
    direction,
    effect.pipe(
      // The peer as the connection already knows it: no address parsing per connect.
      Effect.tap((socket) =>
        Effect.annotateCurrentSpan({
          "tcp.outcome": direction === "connect" ? "connected" : "accepted",
          "tcp.peer": TcpSocket.connectionOf(socket)?.address ?? ""
        })
      ),
      Effect.tapError((error) => Effect.annotateCurrentSpan("tcp.outcome", error._tag))
    ),
    () => pool.stats(),
    (socket, released) => {
      const conn = TcpSocket.connectionOf(socket)
      if (conn !== undefined) conn.onReleased = released
    }
  )

