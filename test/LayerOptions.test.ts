/**
 * Bad configuration is a typed error, not a defect: layer options out of
 * range fail the layer with `InvalidArgument` when it is built (before any
 * connect), a slot that cannot be allocated is `OutOfMemory` on the call
 * that needed it, and a descriptor number out of range is `InvalidArgument`.
 * The layers' error types say so (checked by `tsc --noEmit`).
 * Generated options are fuzzed in faults/layer-options.test.ts.
 */
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import type { Config, Duration } from "effect"
import { fileURLToPath } from "node:url"
import { TcpClient, TcpError, TcpListener, TcpNode, TcpStorage, TcpTest } from "../src/index.ts"
import { commandWorks } from "./faults/support.ts"
import { checkFdLeaks, echoServer, failsWith, roundTrip, runProcess } from "./helpers.ts"

const fromEnv = (env: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnvRecord(env))

/** Builds `layer` and reads the pool's figures through it: building is all that is tested. */
const build = <E>(layer: Layer.Layer<TcpStorage.TcpStorage, E>) => Effect.provide(TcpStorage.stats, layer)

/** The failure `InvalidArgument` of building `layer`, checked to come from `syscall` and to name `field`. */
const rejected = <E extends { readonly _tag: string }>(
  layer: Layer.Layer<TcpStorage.TcpStorage, E>,
  syscall: string,
  field: string
) =>
  Effect.gen(function*() {
    const error = yield* failsWith(() => build(layer), "InvalidArgument", `${syscall} ${field}`)
    assert.isTrue(TcpError.isTcpError(error))
    const invalid = error as unknown as TcpError.InvalidArgument
    assert.strictEqual(invalid.errno, "EINVAL")
    assert.strictEqual(invalid.syscall, syscall)
    assert.include(invalid.message, field)
    return invalid
  })

const noTcpClient = TcpClient.layer.pipe(Layer.provideMerge(TcpStorage.layer()))

describe("layer options", () => {
  checkFdLeaks()

  it.live("TcpNode.layerWith({ bufferSize: 2 ** 40 }) fails when built, not on the first connect", () =>
    Effect.gen(function*() {
      const error = yield* rejected(TcpNode.layerWith({ bufferSize: 2 ** 40 }), "TcpStorage.layer", "bufferSize")
      assert.include(error.message, "1099511627776")
    }))

  it.live("TcpNode.layerWith({ slots: 0 }) is InvalidArgument, not a defect", () =>
    Effect.asVoid(rejected(TcpNode.layerWith({ slots: 0 }), "TcpStorage.layer", "slots")))

  it.live("every pool layer checks every setting", () =>
    Effect.gen(function*() {
      const bad: ReadonlyArray<readonly [field: string, options: TcpStorage.Options]> = [
        ["slots", { slots: 0 }],
        ["slots", { slots: -1 }],
        ["slots", { slots: 1.5 }],
        ["slots", { slots: NaN }],
        ["slots", { slots: Infinity }],
        ["slots", { slots: 2 ** 53 }],
        ["slots", { slots: "4" as unknown as number }],
        ["slots", { slots: null as unknown as number }],
        ["bufferSize", { bufferSize: 1023 }],
        ["bufferSize", { bufferSize: 0 }],
        ["bufferSize", { bufferSize: 2 ** 30 + 1 }],
        ["bufferSize", { bufferSize: 2 ** 32 }],
        ["bufferSize", { bufferSize: 4096.5 }],
        ["bufferSize", { bufferSize: 16n as unknown as number }],
        ["onExhausted", { onExhausted: "block" as "wait" }],
        ["onExhausted", { onExhausted: "Wait" as "wait" }],
        ["onExhausted", { onExhausted: true as unknown as "wait" }],
        ["options", "64" as unknown as TcpStorage.Options],
        ["options", null as unknown as TcpStorage.Options]
      ]
      for (const [field, options] of bad) {
        yield* rejected(TcpStorage.layer(options), "TcpStorage.layer", field)
        yield* rejected(TcpNode.layerWith(options), "TcpStorage.layer", field)
        yield* rejected(TcpTest.layerWith(options), "TcpStorage.layer", field)
      }
    }))

  it.live("the edges of each range are valid and work", () =>
    Effect.gen(function*() {
      const server = yield* echoServer()
      for (
        const options of [
          { slots: 1, bufferSize: 1024, onExhausted: "fail" },
          { slots: 2 ** 53 - 1, bufferSize: 2 ** 30, onExhausted: "wait" },
          {}
        ] as const
      ) {
        yield* Effect.gen(function*() {
          const socket = yield* TcpClient.connect(server.address, { timeout: "3 seconds" })
          yield* roundTrip(socket, "edge")
          yield* socket.close()
          const storage = yield* TcpStorage.TcpStorage
          assert.strictEqual(storage.bufferSize, options.bufferSize ?? TcpStorage.defaults.bufferSize)
        }).pipe(Effect.scoped, Effect.provide(TcpNode.layerWith(options)))
      }
      assert.deepStrictEqual(TcpStorage.bufferSizeRange, { min: 1024, max: 2 ** 30 })
    }))

  it.live("TcpClient.layerWith checks connectTimeout when built", () =>
    Effect.gen(function*() {
      for (const connectTimeout of ["-1 seconds", -5, NaN, "soon", { seconds: -1 }, null]) {
        const layer = TcpClient.layerWith({ connectTimeout: connectTimeout as Duration.Input }).pipe(
          Layer.provideMerge(TcpStorage.layer())
        )
        yield* rejected(layer, "TcpClient.layer", "connectTimeout")
      }
      yield* rejected(
        TcpClient.layerWith(7 as unknown as TcpClient.ClientDefaults).pipe(Layer.provideMerge(TcpStorage.layer())),
        "TcpClient.layer",
        "options"
      )
      // Infinity: no default bound, as a call's own timeout.
      const server = yield* echoServer()
      yield* Effect.scoped(TcpClient.connect(server.address)).pipe(
        Effect.provide(TcpClient.layerWith({ connectTimeout: Infinity }).pipe(Layer.provideMerge(TcpStorage.layer())))
      )
    }))

  it.live("layerConfig: out-of-range values are InvalidArgument, unparsable ones ConfigError", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [Record<string, string>, string, string]> = [
        [{ TCP_POOL_SLOTS: "0" }, "TcpStorage.layer", "slots"],
        [{ TCP_POOL_SLOTS: "-3" }, "TcpStorage.layer", "slots"],
        [{ TCP_BUFFER_SIZE: "512" }, "TcpStorage.layer", "bufferSize"],
        [{ TCP_BUFFER_SIZE: String(2 ** 40) }, "TcpStorage.layer", "bufferSize"],
        [{ TCP_CONNECT_TIMEOUT: "-5 seconds" }, "TcpClient.layer", "connectTimeout"]
      ]
      for (const [env, syscall, field] of cases) {
        yield* rejected(TcpNode.layerConfig.pipe(Layer.provide(fromEnv(env))), syscall, field)
      }
      yield* rejected(TcpStorage.layerConfig.pipe(Layer.provide(fromEnv({ TCP_POOL_SLOTS: "0" }))), "TcpStorage.layer", "slots")
      yield* failsWith(() => build(TcpNode.layerConfig.pipe(Layer.provide(fromEnv({ TCP_BUFFER_SIZE: "big" })))), "ConfigError")
    }))

  it("the layers' error types say what building them can fail with", () => {
    type Tcp = TcpClient.TcpClient | TcpStorage.TcpStorage
    expectTypeOf(TcpNode.layer).toEqualTypeOf<Layer.Layer<Tcp>>()
    expectTypeOf(TcpNode.layerWith({ slots: 1 })).toEqualTypeOf<Layer.Layer<Tcp, TcpError.InvalidArgument>>()
    expectTypeOf(TcpNode.layerConfig).toEqualTypeOf<Layer.Layer<Tcp, Config.ConfigError | TcpError.InvalidArgument>>()
    expectTypeOf(TcpStorage.layer()).toEqualTypeOf<Layer.Layer<TcpStorage.TcpStorage>>()
    expectTypeOf(TcpStorage.layer({})).toEqualTypeOf<Layer.Layer<TcpStorage.TcpStorage, TcpError.InvalidArgument>>()
    expectTypeOf(TcpClient.layer).toEqualTypeOf<Layer.Layer<TcpClient.TcpClient, never, TcpStorage.TcpStorage>>()
    expectTypeOf(TcpClient.layerWith({})).toEqualTypeOf<
      Layer.Layer<TcpClient.TcpClient, TcpError.InvalidArgument, TcpStorage.TcpStorage>
    >()
    expectTypeOf(TcpTest.layer).toEqualTypeOf<Layer.Layer<TcpTest.TcpTest | Tcp>>()
    expectTypeOf(TcpTest.layerWith({})).toEqualTypeOf<Layer.Layer<TcpTest.TcpTest | Tcp, TcpError.InvalidArgument>>()
  })
})

describe("descriptor numbers", () => {
  checkFdLeaks()

  it.live("fromFd with a number no descriptor can have is InvalidArgument, for the client and the listener", () =>
    Effect.gen(function*() {
      for (const fd of [2 ** 31, 2 ** 32, 2 ** 53 - 1, -1, 1.5, NaN, Infinity]) {
        const client = yield* failsWith(() => Effect.scoped(TcpClient.fromFd(fd)), "InvalidArgument", `client fd ${fd}`)
        assert.strictEqual(client.errno, "EINVAL")
        assert.include(client.message, "descriptor number")
        const listener = yield* failsWith(() => Effect.scoped(TcpListener.fromFd(fd)), "InvalidArgument", `listener fd ${fd}`)
        assert.include(listener.message, "descriptor number")
      }
      // The largest number that can be a descriptor is checked like any other: not a TCP socket here.
      yield* failsWith(() => Effect.scoped(TcpClient.fromFd(2 ** 31 - 1)), "InvalidArgument")
    }).pipe(Effect.provide(noTcpClient)))
})

describe("slot allocation under memory pressure", () => {
  const child = fileURLToPath(new URL("./fixtures/slot-alloc-child.ts", import.meta.url))

  it.live("a slot that cannot be allocated is OutOfMemory on the connect, acquire or accept that needed it", () =>
    Effect.gen(function*() {
      const missing = commandWorks("prlimit", ["--version"])
      if (missing !== undefined) return console.log(`skipped: ${missing}`)
      const output = yield* runProcess(process.execPath, [child], 30_000)
      assert.isNull(output.signal, `the child finished within 30 s\nstderr: ${output.stderr}`)
      const result = JSON.parse(output.stdout.trim() || "null") as Record<string, unknown> | null
      const context = `stdout: ${output.stdout}\nstderr: ${output.stderr}`
      if (result !== null && "skipped" in result) return console.log(`skipped: ${String(result.skipped)}`)
      assert.deepInclude(result, {
        first: "success",
        connect: "OutOfMemory",
        acquire: "OutOfMemory",
        accept: "OutOfMemory",
        reuse: "success"
      }, context)
      assert.include(String(result?.connectError), "ENOMEM", context)
      // The failed allocations left no slot counted and none held.
      assert.deepInclude(result?.afterFailures, { slots: 1, inUse: 1, waiting: 0 }, context)
    }))
})
