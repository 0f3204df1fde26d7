/**
 * The memory sockets live in: libdill's `tcp_storage`, as a pool given as a
 * Layer.
 *
 * A slot is one socket's receive buffer (Node reads into it through `onread`,
 * so steady-state receiving allocates nothing per read) and its bookkeeping.
 * Slots are created up to `slots` and reused, so memory held by the library is
 * bounded by the pool whatever peers send. When every slot is in use,
 * `onExhausted: "wait"` (the default) waits for one within the call's
 * deadline, `"fail"` fails at once with `OutOfMemory`.
 *
 * @since 0.1.0
 */
import { Config, Context, Effect, Layer } from "effect"
import type { Scope } from "effect"
import type * as Deadline from "./Deadline.ts"
import { maxBufferSize, minBufferSize } from "./internal/options.ts"
import type { OnExhausted, Stats as PoolStats } from "./internal/pool.ts"
import * as internal from "./internal/storage.ts"
import type * as TcpError from "./TcpError.ts"

/**
 * A storage slot taken explicitly with `acquire`, to pass as `{ storage }` to
 * `connect` or `accept` (libdill's `tcp_connect_mem`). One slot serves one
 * live socket at a time; it returns to the pool when both its scope and its
 * socket are done with it. Printed, it shows its id, size and whether it is
 * still held, never its bytes.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpStorage } from "effect-tcp"
 * Effect.gen(function*() {
 *   const slot: TcpStorage.Slot = yield* TcpStorage.acquire()
 *   return yield* TcpClient.connect("127.0.0.1:6379", { storage: slot })
 * })
 * ```
 * @since 0.1.0
 */
export interface Slot {
  readonly id: number
  readonly bufferSize: number
}

/**
 * How the pool is doing: slots created, slots held (by sockets or scopes),
 * callers waiting for a slot, and the most ever held at once.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpStorage } from "effect-tcp"
 * Effect.map(TcpStorage.stats, (s: TcpStorage.Stats) => s.inUse === 0)
 * ```
 * @since 0.1.0
 */
export type Stats = PoolStats

/**
 * Pool settings. `slots` bounds the number of live sockets (a positive
 * integer, default 1024), `bufferSize` is each socket's receive buffer in
 * bytes (an integer from 1 KiB through 1 GiB, default 64 KiB), `onExhausted`
 * says what a caller does when every slot is held (`"wait"`, the default, or
 * `"fail"`). Anything else fails the layer with `InvalidArgument`.
 *
 * @example
 * ```ts
 * import { TcpStorage } from "effect-tcp"
 * const options: TcpStorage.Options = { slots: 64, bufferSize: 16 * 1024, onExhausted: "fail" }
 * ```
 * @since 0.1.0
 */
export interface Options {
  readonly slots?: number | undefined
  readonly bufferSize?: number | undefined
  readonly onExhausted?: OnExhausted | undefined
}

/**
 * The defaults `TcpStorage.layer()` and `TcpNode.layer` use.
 *
 * @example
 * ```ts
 * import { TcpStorage } from "effect-tcp"
 * TcpStorage.defaults.bufferSize // 65536
 * ```
 * @since 0.1.0
 */
export const defaults = { slots: 1024, bufferSize: 64 * 1024, onExhausted: "wait" } as const

/**
 * The range `bufferSize` must lie in: 1 KiB through 1 GiB.
 *
 * @example
 * ```ts
 * import { TcpStorage } from "effect-tcp"
 * TcpStorage.bufferSizeRange.max // 1073741824
 * ```
 * @since 0.1.0
 */
export const bufferSizeRange: { readonly min: number; readonly max: number } = {
  min: minBufferSize,
  max: maxBufferSize
}

/**
 * `TcpStorage.layer`: without options it cannot fail; with options, options
 * outside what `Options` allows fail the layer with `InvalidArgument`.
 *
 * @example
 * ```ts
 * import type { Layer } from "effect"
 * import { TcpError, TcpStorage } from "effect-tcp"
 * const pool: Layer.Layer<TcpStorage.TcpStorage, TcpError.InvalidArgument> = TcpStorage.layer({ slots: 16 })
 * ```
 * @since 0.1.0
 */
export interface LayerConstructor {
  (): Layer.Layer<TcpStorage>
  (options: Options | undefined): Layer.Layer<TcpStorage, TcpError.InvalidArgument>
}

function layerOf(): Layer.Layer<TcpStorage>
function layerOf(options: Options | undefined): Layer.Layer<TcpStorage, TcpError.InvalidArgument>
function layerOf(options?: Options): Layer.Layer<TcpStorage, TcpError.InvalidArgument> {
  return Layer.effect(TcpStorage, Effect.map(internal.make(options, defaults), TcpStorage.of))
}

/**
 * The storage pool service. Printed (`util.inspect`, `JSON.stringify`,
 * `Effect.log`), it shows its settings and figures (`slots`, `bufferSize`,
 * `inUse`, ...), never a slot's bytes: slots are reused without clearing.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpStorage } from "effect-tcp"
 * Effect.gen(function*() {
 *   const storage = yield* TcpStorage.TcpStorage
 *   return storage.bufferSize
 * })
 * ```
 * @since 0.1.0
 */
export class TcpStorage extends Context.Service<TcpStorage, {
  readonly bufferSize: number
  readonly acquire: (
    options?: Deadline.Options
  ) => Effect.Effect<Slot, TcpError.TimedOut | TcpError.OutOfMemory | TcpError.InvalidArgument, Scope.Scope>
  readonly stats: Effect.Effect<Stats>
}>()("effect-tcp/TcpStorage") {
  /**
   * A pool with the given settings. Settings outside what `Options` allows
   * fail the layer with `InvalidArgument` when it is built (without options
   * the layer cannot fail). Closing the layer's scope aborts the graceful
   * closes still running in the background.
   *
   * @example
   * ```ts
   * import { TcpStorage } from "effect-tcp"
   * const Storage = TcpStorage.TcpStorage.layer({ slots: 256, onExhausted: "fail" })
   * ```
   * @since 0.1.0
   */
  static readonly layer: LayerConstructor = layerOf

  /**
   * A pool configured from `Config`: `TCP_POOL_SLOTS`, `TCP_BUFFER_SIZE`
   * (integers) and `TCP_POOL_ON_EXHAUSTED` (`wait` or `fail`), each
   * defaulting like `layer()`. A value that does not parse is a
   * `ConfigError`; one that parses but is out of range (`TCP_POOL_SLOTS=0`)
   * is `InvalidArgument`, as with `layer`.
   *
   * @example
   * ```ts
   * import { TcpStorage } from "effect-tcp"
   * const Storage = TcpStorage.TcpStorage.layerConfig // TCP_POOL_SLOTS=256 TCP_BUFFER_SIZE=16384
   * ```
   * @since 0.1.0
   */
  static readonly layerConfig: Layer.Layer<TcpStorage, Config.ConfigError | TcpError.InvalidArgument> = Layer.unwrap(
    Effect.map(
      Config.all({
        slots: Config.Int("TCP_POOL_SLOTS").pipe(Config.withDefault(defaults.slots)),
        bufferSize: Config.Int("TCP_BUFFER_SIZE").pipe(Config.withDefault(defaults.bufferSize)),
        onExhausted: Config.Literals(["wait", "fail"], "TCP_POOL_ON_EXHAUSTED").pipe(
          Config.withDefault(defaults.onExhausted)
        )
      }),
      (options) => TcpStorage.layer(options)
    )
  )
}

/**
 * A pool with the given settings (see `Options`); settings out of range
 * fail the layer with `InvalidArgument`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpStorage } from "effect-tcp"
 * const program = TcpClient.connect("127.0.0.1:6379").pipe(Effect.scoped)
 * program.pipe(Effect.provide(TcpClient.layer), Effect.provide(TcpStorage.layer({ slots: 16 })))
 * ```
 * @since 0.1.0
 */
export const layer: LayerConstructor = TcpStorage.layer

/**
 * `TcpStorage.TcpStorage.layerConfig`: a pool configured from `Config`
 * (`ConfigError` for a value that does not parse, `InvalidArgument` for one
 * out of range).
 *
 * @example
 * ```ts
 * import { TcpStorage } from "effect-tcp"
 * const Storage = TcpStorage.layerConfig
 * ```
 * @since 0.1.0
 */
export const layerConfig: Layer.Layer<TcpStorage, Config.ConfigError | TcpError.InvalidArgument> =
  TcpStorage.layerConfig

/**
 * Takes a slot from the pool for the current scope, waiting within the
 * deadline (or failing with `OutOfMemory` when the pool fails fast).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpStorage } from "effect-tcp"
 * Effect.gen(function*() {
 *   const slot = yield* TcpStorage.acquire({ timeout: "1 second" })
 *   const socket = yield* TcpClient.connect("127.0.0.1:6379", { storage: slot })
 * })
 * ```
 * @since 0.1.0
 */
export const acquire = (
  options?: Deadline.Options
): Effect.Effect<
  Slot,
  TcpError.TimedOut | TcpError.OutOfMemory | TcpError.InvalidArgument,
  TcpStorage | Scope.Scope
> => TcpStorage.use((storage) => storage.acquire(options))

/**
 * The pool's current figures.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpStorage } from "effect-tcp"
 * Effect.gen(function*() {
 *   const { inUse, highWater } = yield* TcpStorage.stats
 * })
 * ```
 * @since 0.1.0
 */
export const stats: Effect.Effect<Stats, never, TcpStorage> = TcpStorage.use((storage) => storage.stats)
