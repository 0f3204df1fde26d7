/**
 * Everything effect-tcp needs on Node, with defaults, in one layer.
 *
 * @since 0.1.0
 */
import type { Config } from "effect"
import { Layer } from "effect"
import { TcpClient } from "./TcpClient.ts"
import type * as TcpError from "./TcpError.ts"
import { TcpStorage } from "./TcpStorage.ts"
import type * as TcpStorageModule from "./TcpStorage.ts"

/**
 * The one way the Node layers are put together: the client over a pool,
 * both provided. `layer`, `layerWith` and `layerConfig` differ only in the
 * settings they give each part.
 */
const assemble = <E1, E2>(
  client: Layer.Layer<TcpClient, E1, TcpStorage>,
  storage: Layer.Layer<TcpStorage, E2>
): Layer.Layer<TcpClient | TcpStorage, E1 | E2> => client.pipe(Layer.provideMerge(storage))

/**
 * `TcpClient` and a `TcpStorage` pool with the default settings (1024 slots
 * of 64 KiB, waiting when exhausted). Names resolve through the operating
 * system unless an `AddressResolver` is provided to the layer. It cannot
 * fail.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpNode } from "effect-tcp"
 * const program = TcpClient.connect("127.0.0.1:6379").pipe(Effect.scoped, Effect.provide(TcpNode.layer))
 * ```
 * @since 0.1.0
 */
export const layer: Layer.Layer<TcpClient | TcpStorage> = assemble(TcpClient.layer, TcpStorage.layer())

/**
 * Like `layer`, with the pool's settings given (see `TcpStorage.Options`).
 * Settings out of range (`slots: 0`, a `bufferSize` under 1 KiB or over
 * 1 GiB, an `onExhausted` other than `"wait"` or `"fail"`) fail the layer
 * with `InvalidArgument` when it is built.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpNode } from "effect-tcp"
 * const Tcp = TcpNode.layerWith({ slots: 64, bufferSize: 16 * 1024, onExhausted: "fail" })
 * const program = TcpClient.connect("127.0.0.1:6379").pipe(
 *   Effect.scoped,
 *   Effect.provide(Tcp),
 *   Effect.catchTag("InvalidArgument", (e) => Effect.logError(e.message))
 * )
 * ```
 * @since 0.1.0
 */
export const layerWith = (
  options: TcpStorageModule.Options
): Layer.Layer<TcpClient | TcpStorage, TcpError.InvalidArgument> => assemble(TcpClient.layer, TcpStorage.layer(options))

/**
 * `TcpClient` and `TcpStorage` configured from `Config`: `TCP_POOL_SLOTS`,
 * `TCP_BUFFER_SIZE`, `TCP_POOL_ON_EXHAUSTED` and `TCP_CONNECT_TIMEOUT`. A
 * value that does not parse fails the layer with a `ConfigError`, one that
 * parses but is out of range (`TCP_POOL_SLOTS=0`, a negative timeout) with
 * `InvalidArgument`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpNode } from "effect-tcp"
 * TcpClient.connect("127.0.0.1:6379").pipe(Effect.scoped, Effect.provide(TcpNode.layerConfig))
 * ```
 * @since 0.1.0
 */
export const layerConfig: Layer.Layer<
  TcpClient | TcpStorage,
  Config.ConfigError | TcpError.InvalidArgument
> = assemble(TcpClient.layerConfig, TcpStorage.layerConfig)
