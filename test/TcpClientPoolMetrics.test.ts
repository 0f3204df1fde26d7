/**
 * TcpClient.pool's metrics under TcpMetrics.layer: lends by outcome,
 * discards, and the idle / in-use / waiting gauges, named by the peer. In
 * memory, so the figures belong to this test's pool alone.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Metric } from "effect"
import { TcpClient, TcpListener, TcpMetrics, TcpTest } from "../src/index.ts"
import { echo4, expectWaiting, roundTrip } from "./helpers.ts"

const peer = "10.9.8.7:6000"
const lends = (outcome: "created" | "reused") =>
  Effect.map(Metric.value(Metric.withAttributes(TcpMetrics.connectionPoolLends, { peer, outcome })), (s) => s.count)
const discarded = Effect.map(
  Metric.value(Metric.withAttributes(TcpMetrics.connectionPoolDiscarded, { peer })),
  (s) => s.count
)
const gauge = (state: "idle" | "inUse" | "waiting") =>
  Effect.map(Metric.value(Metric.withAttributes(TcpMetrics.connectionPoolConnections, { peer, state })), (s) => s.value)

const echoServer = Effect.gen(function*() {
  const listener = yield* TcpListener.listen(peer)
  yield* Effect.forkScoped(TcpListener.serve(listener, echo4))
})

describe("TcpClient.pool metrics", () => {
  it.effect("lends, discards and the gauges follow the pool's own stats", () =>
    Effect.gen(function*() {
      yield* echoServer
      const pool = yield* TcpClient.pool(peer, { size: 1 })
      for (let i = 0; i < 3; i++) yield* Effect.scoped(Effect.flatMap(pool.get(), (socket) => roundTrip(socket, "ping")))
      assert.deepStrictEqual([yield* lends("created"), yield* lends("reused")], [1, 2])
      assert.deepStrictEqual([yield* gauge("idle"), yield* gauge("inUse")], [1, 0])

      // One use holds the connection while a second waits for it.
      const release = yield* Deferred.make<void>()
      const holding = yield* Effect.forkChild(Effect.scoped(Effect.flatMap(pool.get(), () => Deferred.await(release))))
      const waiting = yield* Effect.forkChild(Effect.scoped(pool.get()))
      yield* expectWaiting(waiting, "a second get")
      assert.deepStrictEqual([yield* gauge("inUse"), yield* gauge("waiting")], [1, 1])
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holding)
      yield* Fiber.join(waiting)
      assert.strictEqual(yield* gauge("waiting"), 0)

      // A use that fails gives its connection up.
      yield* Effect.exit(Effect.scoped(Effect.flatMap(pool.get(), () => Effect.fail("use failed"))))
      assert.strictEqual(yield* discarded, 1)
      assert.deepStrictEqual([yield* gauge("idle"), yield* gauge("inUse")], [0, 0])
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.created, stats.reused, stats.discarded], [1, 5, 1])
      assert.deepStrictEqual([yield* lends("created"), yield* lends("reused")], [1, 5])
    }).pipe(Effect.scoped, Effect.provide(Layer.merge(TcpTest.layer, TcpMetrics.layer))))

  it.effect("off without TcpMetrics.layer: a pool records nothing", () =>
    Effect.gen(function*() {
      yield* echoServer
      const before = yield* lends("created")
      const pool = yield* TcpClient.pool(peer, { size: 1 })
      yield* Effect.scoped(Effect.flatMap(pool.get(), (socket) => roundTrip(socket, "ping")))
      assert.strictEqual(yield* lends("created"), before)
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))
})
