/**
 * Layers built from Config: the pool's settings and the client's default
 * connect timeout come from the ConfigProvider (environment variables).
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { TcpClient, TcpNode, TcpStorage } from "../src/index.ts"
import { checkFdLeaks, expectPoolIdle, fullBacklog } from "./helpers.ts"

const fromEnv = (env: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnvRecord(env))

describe("TcpNode.layerConfig", () => {
  checkFdLeaks()

  it.live("the pool's settings come from TCP_POOL_SLOTS, TCP_BUFFER_SIZE and TCP_POOL_ON_EXHAUSTED", () =>
    Effect.gen(function*() {
      const storage = yield* TcpStorage.TcpStorage
      assert.strictEqual(storage.bufferSize, 2048)
      // Two slots, failing fast: the third is OutOfMemory.
      yield* Effect.scoped(Effect.gen(function*() {
        yield* TcpStorage.acquire()
        yield* TcpStorage.acquire()
        const error = yield* Effect.flip(TcpStorage.acquire())
        assert.strictEqual(error._tag, "OutOfMemory")
      }))
      yield* expectPoolIdle
    }).pipe(
      Effect.provide(TcpNode.layerConfig.pipe(
        Layer.provide(fromEnv({ TCP_POOL_SLOTS: "2", TCP_BUFFER_SIZE: "2048", TCP_POOL_ON_EXHAUSTED: "fail" }))
      ))
    ))

  it.live("defaults apply when nothing is set", () =>
    Effect.gen(function*() {
      const storage = yield* TcpStorage.TcpStorage
      assert.strictEqual(storage.bufferSize, TcpStorage.defaults.bufferSize)
    }).pipe(Effect.provide(TcpNode.layerConfig.pipe(Layer.provide(fromEnv({}))))))

  it.live("TCP_CONNECT_TIMEOUT bounds a connect that gives no deadline of its own", () =>
    Effect.gen(function*() {
      const full = yield* fullBacklog
      const started = Date.now()
      const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(full.address)))
      assert.strictEqual(error._tag, "TimedOut")
      assert.isAtLeast(Date.now() - started, 250)
      yield* expectPoolIdle
    }).pipe(
      Effect.scoped,
      Effect.provide(TcpNode.layerConfig.pipe(Layer.provide(fromEnv({ TCP_CONNECT_TIMEOUT: "300 millis" }))))
    ))

  it.live("a malformed setting fails the layer with a ConfigError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.provide(TcpStorage.stats, TcpNode.layerConfig.pipe(Layer.provide(fromEnv({ TCP_POOL_SLOTS: "many" }))))
      )
      assert.strictEqual(error._tag, "ConfigError")
    }))
})
