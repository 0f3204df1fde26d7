/**
 * Metrics for connections, bytes and the storage pool, with Effect's own
 * `Metric` module. Off by default: provide `TcpMetrics.layer` to turn them
 * on. Off, they cost one context read per connect or accept; byte counts are
 * kept as plain integers on each connection either way and reported when it
 * is released, so the data path does no metric work.
 *
 * @since 0.1.0
 */
import { Context, Layer, Metric } from "effect"

/**
 * Whether the library records its metrics (default `false`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * const on = Effect.provideService(Effect.void, TcpMetrics.Enabled, true)
 * ```
 * @since 0.1.0
 */
export const Enabled: Context.Reference<boolean> = Context.Reference<boolean>("effect-tcp/TcpMetrics/Enabled", {
  defaultValue: () => false
})

/**
 * Turns the library's metrics on.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { TcpMetrics, TcpNode } from "effect-tcp"
 * const Tcp = Layer.merge(TcpNode.layer, TcpMetrics.layer)
 * ```
 * @since 0.1.0
 */
export const layer: Layer.Layer<never> = Layer.succeed(Enabled, true)

/**
 * Whether sockets record a span for every data call (`send`, `sendv`,
 * `recv`, `recvInto`, `recvv`, `recvSome`, `recvUntil`; default `false`).
 * Read when a socket is made: it holds for the socket's life. Lifecycle
 * calls (`connect`, `accept`, `listen`, `done`, `close`) always have theirs.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * const traced = <A, E, R>(program: Effect.Effect<A, E, R>) => Effect.provideService(program, TcpMetrics.DataSpans, true)
 * ```
 * @since 0.1.0
 */
export const DataSpans: Context.Reference<boolean> = Context.Reference<boolean>("effect-tcp/TcpMetrics/DataSpans", {
  defaultValue: () => false
})

/**
 * Turns on a span for every data call of the sockets made under it, as a
 * child of the caller's span, ended with the call's exit. Off by default,
 * as in Effect's own socket module and Node's instrumentation: a span per
 * read or write costs more than the read.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { TcpMetrics, TcpNode } from "effect-tcp"
 * const Traced = Layer.mergeAll(TcpNode.layer, TcpMetrics.layer, TcpMetrics.layerDataSpans)
 * ```
 * @since 0.1.0
 */
export const layerDataSpans: Layer.Layer<never> = Layer.succeed(DataSpans, true)

/**
 * Connections opened, by `direction` (`connect` or `accept`).
 *
 * @example
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(TcpMetrics.connectionsOpened)
 * ```
 * @since 0.1.0
 */
export const connectionsOpened = Metric.counter("tcp_connections_opened_total", {
  description: "TCP connections opened (connect and accept)",
  incremental: true
})

/**
 * Connections opened and not yet released.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(TcpMetrics.connectionsActive)
 * ```
 * @since 0.1.0
 */
export const connectionsActive = Metric.gauge("tcp_connections_active", {
  description: "TCP connections open now"
})

/**
 * Connects and accepts that failed, by the error's `tag`.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(Metric.withAttributes(TcpMetrics.connectionsFailed, { tag: "ConnRefused", direction: "connect" }))
 * ```
 * @since 0.1.0
 */
export const connectionsFailed = Metric.counter("tcp_connections_failed_total", {
  description: "TCP connects and accepts that failed, by error tag",
  incremental: true
})

/**
 * Bytes handed to the kernel, counted when each connection is released.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(TcpMetrics.bytesSent)
 * ```
 * @since 0.1.0
 */
export const bytesSent = Metric.counter("tcp_bytes_sent_total", {
  description: "bytes sent, counted when each connection is released",
  incremental: true
})

/**
 * Bytes delivered to receives, counted when each connection is released.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(TcpMetrics.bytesReceived)
 * ```
 * @since 0.1.0
 */
export const bytesReceived = Metric.counter("tcp_bytes_received_total", {
  description: "bytes received, counted when each connection is released",
  incremental: true
})

/**
 * How long successful connects took (resolution, pool and handshake), in
 * milliseconds.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(TcpMetrics.connectDuration)
 * ```
 * @since 0.1.0
 */
export const connectDuration = Metric.histogram("tcp_connect_duration_ms", {
  description: "duration of successful connects in milliseconds",
  boundaries: Metric.exponentialBoundaries({ start: 0.125, factor: 2, count: 18 })
})

/**
 * Storage slots held, as of the last connection opened or released.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(TcpMetrics.poolSlotsInUse)
 * ```
 * @since 0.1.0
 */
export const poolSlotsInUse = Metric.gauge("tcp_pool_slots_in_use", {
  description: "storage pool slots held by sockets and scopes"
})

/**
 * Callers waiting for a storage slot, as of the last connection opened or
 * released.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(TcpMetrics.poolWaiters)
 * ```
 * @since 0.1.0
 */
export const poolWaiters = Metric.gauge("tcp_pool_waiters", {
  description: "callers waiting for a storage slot"
})

/**
 * Connections a `TcpClient.pool` lent, by `peer` and `outcome`: `reused`
 * (an idle connection) or `created` (a new connect).
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(Metric.withAttributes(TcpMetrics.connectionPoolLends, { peer: "127.0.0.1:6379", outcome: "reused" }))
 * ```
 * @since 0.1.0
 */
export const connectionPoolLends = Metric.counter("tcp_connection_pool_lends_total", {
  description: "connections lent by TcpClient.pool, reused or created",
  incremental: true
})

/**
 * Connections a `TcpClient.pool` closed instead of keeping, by `peer`: left
 * unclean by a use, or found closed or reset while idle.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(Metric.withAttributes(TcpMetrics.connectionPoolDiscarded, { peer: "127.0.0.1:6379" }))
 * ```
 * @since 0.1.0
 */
export const connectionPoolDiscarded = Metric.counter("tcp_connection_pool_discarded_total", {
  description: "pooled connections closed because they could not serve another use",
  incremental: true
})

/**
 * A `TcpClient.pool`'s connections by `peer` and `state` (`idle` or
 * `inUse`), and its callers waiting for one (`state: "waiting"`), as of its
 * last lend or return.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { TcpMetrics } from "effect-tcp"
 * Metric.value(Metric.withAttributes(TcpMetrics.connectionPoolConnections, { peer: "127.0.0.1:6379", state: "idle" }))
 * ```
 * @since 0.1.0
 */
export const connectionPoolConnections = Metric.gauge("tcp_connection_pool_connections", {
  description: "a TcpClient.pool's idle and in-use connections, and its waiting callers"
})
