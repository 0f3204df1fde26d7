/**
 * Layer options, fuzzed with fast-check like the call options in
 * bad-input.test.ts: every value of every option of every layer constructor
 * (TcpStorage.layer, TcpNode.layerWith, TcpTest.layerWith,
 * TcpClient.layerWith, and the `Config` layers from generated environment
 * strings) is generated with whether the documentation makes it valid; then
 *
 *   - a valid one builds a layer that works: a connect, an exchange of bytes
 *     and a slot taken explicitly all succeed on it;
 *   - an invalid one fails the layer with `InvalidArgument` (EINVAL, from the
 *     layer: `syscall` names it), never a defect, never a hang (each run is
 *     bounded by 10 s of real time);
 *   - anything at all as the whole options object does one or the other.
 *
 * What is valid (TcpStorage.Options, TcpClient.ClientDefaults): `slots` a
 * positive safe integer; `bufferSize` an integer from 1024 through 2^30;
 * `onExhausted` "wait" or "fail"; `connectTimeout` a non-negative duration
 * (infinite allowed); each may be left out (`undefined`), and `null` is a
 * value like any other, so invalid.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Fiber, Layer } from "effect"
import fc from "fast-check"
import { TcpClient, TcpNode, TcpStorage, TcpTest } from "../../src/index.ts"
import { checkFdLeaks, echoServer } from "../helpers.ts"
import { either, optional, optionsOf, property, show } from "./arbitraries.ts"
import { classify, type Outcome, type Tcp } from "./support.ts"

// ------------------------------------------------------- the generators

const junk = fc.constantFrom<unknown>(true, false, null, {}, [], "x", Symbol.for("x"), () => 1, 7n)
const notWhole = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Number.isInteger(n))

const slots = either(
  fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constantFrom(1, 2 ** 31, 2 ** 53 - 1)),
  fc.oneof(
    fc.integer({ min: -(2 ** 31), max: 0 }),
    notWhole,
    fc.constantFrom<unknown>(-0, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 60, "4", "1", 4n, [4], { valueOf: () => 4 }),
    junk
  )
)

const bufferSize = either(
  fc.oneof(
    { arbitrary: fc.integer({ min: 1024, max: 256 * 1024 }), weight: 8 },
    // The largest ones are reserved, not touched: the exchange writes a few bytes.
    { arbitrary: fc.constantFrom(1024, 1025, 2 ** 20, 2 ** 30), weight: 1 }
  ),
  fc.oneof(
    fc.integer({ min: -(2 ** 31), max: 1023 }),
    fc.maxSafeNat().filter((n) => n > 2 ** 30),
    notWhole,
    fc.constantFrom<unknown>(
      2 ** 30 + 1,
      2 ** 31,
      2 ** 32,
      2 ** 40,
      2 ** 53,
      NaN,
      Infinity,
      -Infinity,
      "65536",
      65536n,
      [65536],
      { valueOf: () => 65536 }
    ),
    junk
  )
)

const onExhausted = either(
  fc.constantFrom("wait", "fail"),
  fc.oneof(fc.constantFrom<unknown>("Wait", "FAIL", "", " wait", "wait ", "block", "drop", 0, 1, ["wait"]), junk)
)

const durationGood = fc.oneof(
  fc.integer({ min: 0, max: 10_000 }),
  fc.double({ min: 0, max: 1e7, noNaN: true, noDefaultInfinity: true }),
  fc.integer({ min: 0, max: 60 }).map((n) => `${n} seconds`),
  fc.constantFrom<Duration.Input>("1.5 seconds", "2 minutes", "250 micros", 5_000_000n, [1, 500], Duration.millis(30), {
    seconds: 2
  }, Infinity, "Infinity", Duration.infinity)
)
const durationBad = fc.oneof(
  fc.integer({ min: -10_000, max: -1 }),
  fc.double({ max: -1e-6, noNaN: true }),
  fc.constantFrom<unknown>(NaN, -Infinity, "-5 millis", "5millis", "5 parsecs", "", "soon", -1n, [1], [-1, 0], {
    seconds: -1
  }, Duration.millis(-5), true, null, Symbol.for("1 second"))
)
const connectTimeout = either(durationGood, durationBad)

const poolOptions = optionsOf({
  slots: optional(slots),
  bufferSize: optional(bufferSize),
  onExhausted: optional(onExhausted)
})
const clientOptions = optionsOf({ connectTimeout: optional(connectTimeout) })

const anyValue = fc.anything({ withBigInt: true, withMap: true, withSet: true, withTypedArray: true, withNullPrototype: true })
/** Anything as the options, or as any of their fields. */
const anything = fc.oneof(
  anyValue,
  fc.record(
    { slots: anyValue, bufferSize: anyValue, onExhausted: anyValue, connectTimeout: anyValue },
    { requiredKeys: [] }
  )
)

// -------------------------------------------------------------- judging

/** Builds `layer` and runs `workload` on it, bounded by 10 s of real time. */
const attempt = <R, E>(layer: Layer.Layer<R, E>, workload: Effect.Effect<void, unknown, R>): Effect.Effect<Outcome> =>
  Effect.scoped(workload).pipe(
    Effect.provide(layer),
    Effect.timeoutOrElse({ duration: "10 seconds", orElse: () => Effect.die(new Error("hung for 10 s")) }),
    Effect.exit,
    Effect.map(classify)
  )

/** Valid: the layer built and worked. Invalid: InvalidArgument from the layer (`syscall`). Never a defect. */
const judge = (label: string, outcome: Outcome, ok: boolean | undefined, syscalls: ReadonlyArray<string>) => {
  if (outcome.kind === "defect") return assert.fail(`${label}: defect (or a throw / a hang)\n${outcome.cause}`)
  if (outcome.kind === "interrupted") return assert.fail(`${label}: interrupted`)
  if (outcome.kind === "success") {
    if (ok === false) assert.fail(`${label}: invalid options accepted`)
    return
  }
  if (ok === true) return assert.fail(`${label}: valid options rejected: ${String(outcome.error)}`)
  assert.strictEqual(outcome.tag, "InvalidArgument", `${label}: ${String(outcome.error)}`)
  const error = outcome.error as { readonly errno?: unknown; readonly syscall?: unknown }
  assert.strictEqual(error.errno, "EINVAL", label)
  assert.include(syscalls, error.syscall, `${label}: the error comes from the layer`)
}

/** What a working Node layer does: a slot taken explicitly, a connect, bytes both ways, a graceful close. */
const exchange = (address: string): Effect.Effect<void, unknown, Tcp> =>
  Effect.gen(function*() {
    const slot = yield* TcpStorage.acquire({ timeout: "3 seconds" })
    const socket = yield* TcpClient.connect(address, { timeout: "3 seconds", storage: slot })
    yield* socket.send(new TextEncoder().encode("ping"), { timeout: "3 seconds" })
    const back = new TextDecoder().decode(yield* socket.recv(4, { timeout: "3 seconds" }))
    if (back !== "ping") return yield* Effect.die(new Error(`echoed ${back}`))
    yield* socket.close()
  }).pipe(Effect.scoped)

/** The same through the in-memory network: the test's peer answers. */
const exchangeInMemory: Effect.Effect<void, unknown, Tcp | TcpTest.TcpTest> = Effect.gen(function*() {
  const server = yield* TcpTest.listen("127.0.0.1:7000")
  const app = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
    const slot = yield* TcpStorage.acquire()
    const socket = yield* TcpClient.connect("127.0.0.1:7000", { storage: slot })
    yield* socket.send(new TextEncoder().encode("ping"))
    return new TextDecoder().decode(yield* socket.recv(4))
  })))
  const peer = yield* server.accept()
  yield* peer.send(yield* peer.recv(4))
  const back = yield* Fiber.join(app)
  if (back !== "ping") return yield* Effect.die(new Error(`echoed ${back}`))
}).pipe(Effect.scoped)

const fromEnv = (env: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnvRecord(env))

// ---------------------------------------------------------------- tests

describe("faults: layer options (fast-check)", () => {
  checkFdLeaks()

  it.live("TcpStorage.layer and TcpNode.layerWith: generated pool options", () =>
    Effect.gen(function*() {
      const server = yield* echoServer()
      yield* property(poolOptions, 200, (o) =>
        Effect.gen(function*() {
          const viaStorage = TcpClient.layer.pipe(Layer.provideMerge(TcpStorage.layer(o.value as TcpStorage.Options)))
          judge(`TcpStorage.layer(${show(o.value)})`, yield* attempt(viaStorage, exchange(server.address)), o.ok, [
            "TcpStorage.layer"
          ])
          const viaNode = TcpNode.layerWith(o.value as TcpStorage.Options)
          judge(`TcpNode.layerWith(${show(o.value)})`, yield* attempt(viaNode, exchange(server.address)), o.ok, [
            "TcpStorage.layer"
          ])
        }))
    }).pipe(Effect.scoped), 120_000)

  it.live("TcpTest.layerWith: generated pool options", () =>
    property(poolOptions, 200, (o) =>
      Effect.gen(function*() {
        const outcome = yield* attempt(TcpTest.layerWith(o.value as TcpStorage.Options), exchangeInMemory)
        judge(`TcpTest.layerWith(${show(o.value)})`, outcome, o.ok, ["TcpStorage.layer"])
      })), 120_000)

  it.live("TcpClient.layerWith: generated connectTimeout", () =>
    Effect.gen(function*() {
      const server = yield* echoServer()
      yield* property(clientOptions, 200, (o) =>
        Effect.gen(function*() {
          const layer = TcpClient.layerWith(o.value as TcpClient.ClientDefaults).pipe(
            Layer.provideMerge(TcpStorage.layer())
          )
          judge(`TcpClient.layerWith(${show(o.value)})`, yield* attempt(layer, exchange(server.address)), o.ok, [
            "TcpClient.layer"
          ])
        }))
    }).pipe(Effect.scoped), 120_000)

  it.live("anything at all as the options or their fields: a working layer or InvalidArgument, never a defect", () =>
    Effect.gen(function*() {
      const server = yield* echoServer()
      yield* property(anything, 300, (u) =>
        Effect.gen(function*() {
          const layers: ReadonlyArray<readonly [string, Layer.Layer<Tcp, unknown>, string]> = [
            ["TcpStorage.layer", TcpClient.layer.pipe(Layer.provideMerge(TcpStorage.layer(u as TcpStorage.Options))), "TcpStorage.layer"],
            ["TcpNode.layerWith", TcpNode.layerWith(u as TcpStorage.Options), "TcpStorage.layer"],
            [
              "TcpClient.layerWith",
              TcpClient.layerWith(u as TcpClient.ClientDefaults).pipe(Layer.provideMerge(TcpStorage.layer())),
              "TcpClient.layer"
            ]
          ]
          for (const [name, layer, syscall] of layers) {
            judge(`${name}(${show(u)})`, yield* attempt(layer, exchange(server.address)), undefined, [syscall])
          }
        }))
    }).pipe(Effect.scoped), 120_000)

  it.live("layerConfig: generated environment strings are a working layer, ConfigError or InvalidArgument", () =>
    Effect.gen(function*() {
      const server = yield* echoServer()
      /** A decimal integer string and whether it is in `min..max`; or any string (judged only as "not a defect"). */
      const intText = (min: number, max: number) =>
        fc.oneof(
          fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((n) => ({ text: String(n), ok: n >= min && n <= max })),
          fc.constantFrom(String(min), String(max), String(min - 1), String(max + 1)).map((text) => ({
            text,
            ok: Number(text) >= min && Number(text) <= max
          })),
          fc.string({ maxLength: 8 }).map((text) => ({ text, ok: undefined as boolean | undefined }))
        )
      const env = fc.record({
        TCP_POOL_SLOTS: intText(1, Number.MAX_SAFE_INTEGER),
        TCP_BUFFER_SIZE: intText(1024, 2 ** 30),
        TCP_POOL_ON_EXHAUSTED: fc.oneof(
          fc.constantFrom("wait", "fail").map((text) => ({ text, ok: true as boolean | undefined })),
          fc.string({ maxLength: 6 }).map((text) => ({ text, ok: undefined as boolean | undefined }))
        ),
        TCP_CONNECT_TIMEOUT: fc.oneof(
          fc.integer({ min: 0, max: 10 }).map((n) => ({ text: `${n} seconds`, ok: true as boolean | undefined })),
          fc.integer({ min: 1, max: 10 }).map((n) => ({ text: `-${n} seconds`, ok: false as boolean | undefined })),
          fc.string({ maxLength: 8 }).map((text) => ({ text, ok: undefined as boolean | undefined }))
        )
      }, { requiredKeys: [] })
      yield* property(env, 200, (record) =>
        Effect.gen(function*() {
          const entries = Object.entries(record)
          const strings = Object.fromEntries(entries.map(([k, v]) => [k, v.text]))
          const oks = entries.map(([, v]) => v.ok)
          const outcome = yield* attempt(TcpNode.layerConfig.pipe(Layer.provide(fromEnv(strings))), exchange(server.address))
          const label = `TcpNode.layerConfig(${show(strings)})`
          if (outcome.kind === "defect") return assert.fail(`${label}: defect\n${outcome.cause}`)
          if (outcome.kind === "error" && outcome.tag === "ConfigError") {
            // Never for values all valid (an integer beyond 2^53 - 1 is Config's own ConfigError).
            assert.isFalse(oks.every((ok) => ok === true), `${label}: ${String(outcome.error)}`)
            return
          }
          // Every value parsed: the verdict is whether each is in range (unknown strings parsed too, so no verdict).
          const verdict = oks.includes(undefined) ? undefined : oks.every((ok) => ok === true)
          judge(label, outcome, verdict, ["TcpStorage.layer", "TcpClient.layer"])
        }))
    }).pipe(Effect.scoped), 120_000)
})
