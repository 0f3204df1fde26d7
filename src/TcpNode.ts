/**
 * Everything effect-tcp needs on Node, with defaults, in one layer.
 *
 * @since 0.1.0
 */
import type { Config } from "effect"
import { Layer } from "effect"
import { TcpClient } from "./TcpClient.ts"
import { TcpStorage } from "./TcpStorage.ts"

/**
 * `TcpClient` and a `TcpStorage` pool with the default settings (1024 slots
 * of 64 KiB, waiting when exhausted). Names resolve through the operating
 * system unless an `AddressResolver` is provided to the layer.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpNode } from "effect-tcp"
 * const program = TcpClient.connect("127.0.0.1:6379").pipe(Effect.scoped, Effect.provide(TcpNode.layer))
 * ```
 * @since 0.1.0
 */
export const layer: Layer.Layer<TcpClient | TcpStorage> = TcpClient.layer.pipe(
  Layer.provideMerge(TcpStorage.layer())
)

/**
 * Like `layer`, with the pool's settings given.
 *
 * @example
 * ```ts
 * import { TcpNode } from "effect-tcp"
 * const Tcp = TcpNode.layerWith({ slots: 64, bufferSize: 16 * 1024, onExhausted: "fail" })
 * ```
 * @since 0.1.0
 */
export const layerWith = (options: Parameters<typeof TcpStorage.layer>[0]): Layer.Layer<TcpClient | TcpStorage> =>
  TcpClient.layer.pipe(Layer.provideMerge(TcpStorage.layer(options)))

/**
 * `TcpClient` and `TcpStorage` configured from `Config`: `TCP_POOL_SLOTS`,
 * `TCP_BUFFER_SIZE`, `TCP_POOL_ON_EXHAUSTED` and `TCP_CONNECT_TIMEOUT`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpNode } from "effect-tcp"
 * TcpClient.connect("127.0.0.1:6379").pipe(Effect.scoped, Effect.provide(TcpNode.layerConfig))
 * ```
 * @since 0.1.0
 */
export const layerConfig: Layer.Layer<TcpClient | TcpStorage, Config.ConfigError> = TcpClient.layerConfig.pipe(
  Layer.provideMerge(TcpStorage.layerConfig)
)
