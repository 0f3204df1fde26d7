/**
 * Metrics (on with TcpMetrics.layer, off by default) and the outcome on the
 * connect span, against real loopback sockets.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric, Tracer } from "effect"
import { TcpClient, TcpListener, TcpMetrics } from "../src/index.ts"
import { checkFdLeaks, closedPort, expectPoolIdle, TestTcp, withTcp } from "./helpers.ts"

const T = { timeout: "3 seconds" } as const
const count = (metric: Metric.Metric<number, Metric.CounterState<number>>) =>
  Effect.map(Metric.value(metric), (state) => state.count)
const refused = Metric.withAttributes(TcpMetrics.connectionsFailed, { tag: "ConnRefused", direction: "connect" })
const openedByConnect = Metric.withAttributes(TcpMetrics.connectionsOpened, { direction: "connect" })
const openedByAccept = Metric.withAttributes(TcpMetrics.connectionsOpened, { direction: "accept" })

/** A tracer that keeps every span it starts. */
const recordingTracer = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, tracer }
}

/** Connects, exchanges `n` bytes each way, closes; and a refused connect. */
const workload = (n: number) =>
  Effect.gen(function*() {
    const listener = yield* TcpListener.listen("127.0.0.1:0")
    yield* Effect.scoped(Effect.gen(function*() {
      const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
      const server = yield* listener.accept(T)
      yield* client.send(new Uint8Array(n), T)
      yield* server.recv(n, T)
      yield* server.send(new Uint8Array(n), T)
      yield* client.recv(n, T)
      yield* Effect.all([client.close(T), server.close(T)], { concurrency: 2 })
    }))
    const port = yield* closedPort
    yield* Effect.flip(Effect.scoped(TcpClient.connect(`127.0.0.1:${port}`, T)))
  })

describe("TcpMetrics", () => {
  checkFdLeaks()

  it.live("on: opened, failed by tag, bytes both ways, active back to zero, connect durations", () =>
    withTcp(Effect.gen(function*() {
      const before = {
        connects: yield* count(openedByConnect),
        accepts: yield* count(openedByAccept),
        refused: yield* count(refused),
        sent: yield* count(TcpMetrics.bytesSent),
        received: yield* count(TcpMetrics.bytesReceived),
        durations: (yield* Metric.value(TcpMetrics.connectDuration)).count
      }
      yield* workload(1000)
      yield* expectPoolIdle
      assert.strictEqual((yield* count(openedByConnect)) - before.connects, 1)
      assert.strictEqual((yield* count(openedByAccept)) - before.accepts, 1)
      assert.strictEqual((yield* count(refused)) - before.refused, 1)
      assert.strictEqual((yield* count(TcpMetrics.bytesSent)) - before.sent, 2000, "1000 bytes from each end")
      assert.strictEqual((yield* count(TcpMetrics.bytesReceived)) - before.received, 2000)
      assert.strictEqual((yield* Metric.value(TcpMetrics.connectDuration)).count - before.durations, 1)
      assert.strictEqual((yield* Metric.value(TcpMetrics.connectionsActive)).value, 0)
      assert.strictEqual((yield* Metric.value(TcpMetrics.poolSlotsInUse)).value, 0)
    }), TestTcp.pipe(Layer.merge(TcpMetrics.layer))))

  it.live("off by default: the same work records nothing", () =>
    withTcp(Effect.gen(function*() {
      const before = [yield* count(openedByConnect), yield* count(refused), yield* count(TcpMetrics.bytesSent)]
      yield* workload(100)
      const after = [yield* count(openedByConnect), yield* count(refused), yield* count(TcpMetrics.bytesSent)]
      assert.deepStrictEqual(after, before)
    })))

  it.live("the connect span carries the outcome", () =>
    withTcp(Effect.gen(function*() {
      const { spans, tracer } = recordingTracer()
      const port = yield* closedPort
      yield* Effect.flip(Effect.scoped(TcpClient.connect(`127.0.0.1:${port}`, T))).pipe(Effect.withTracer(tracer))
      const connect = spans.find((span) => span.name === "TcpClient.connect")
      assert.isDefined(connect)
      assert.strictEqual(connect?.attributes.get("tcp.outcome"), "ConnRefused")
      assert.strictEqual(connect?.attributes.get("tcp.address"), `127.0.0.1:${port}`)
    })))

  it.live("data calls record no span by default; connect, accept and close do", () =>
    withTcp(Effect.gen(function*() {
      const { spans, tracer } = recordingTracer()
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
        const server = yield* listener.accept(T)
        yield* client.send(new Uint8Array(4), T)
        yield* server.recv(4, T)
        yield* client.done(T)
      })).pipe(Effect.withTracer(tracer))
      const names = spans.map((span) => span.name)
      assert.includeMembers(names, ["TcpClient.connect", "TcpListener.accept", "TcpSocket.done"])
      assert.notInclude(names, "TcpSocket.send")
      assert.notInclude(names, "TcpSocket.recv")
    })))

  it.live("connect and accept spans name the peer; with layerDataSpans every data call is a span under the caller's, ended with its exit", () =>
    withTcp(Effect.gen(function*() {
      const { spans, tracer } = recordingTracer()
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
        const server = yield* listener.accept(T)
        yield* Effect.gen(function*() {
          yield* client.send(new Uint8Array(4), T)
          yield* client.sendv([new Uint8Array(2), new Uint8Array(2)], T)
          yield* server.recv(2, T)
          yield* server.recvInto(new Uint8Array(2), T)
          yield* server.recvv([new Uint8Array(1), new Uint8Array(1)], T)
          yield* server.recvSome(8, T)
          yield* Effect.flip(server.recv(1, { timeout: 0 }))
        }).pipe(Effect.withSpan("app.exchange"))
      })).pipe(Effect.withTracer(tracer))
      const connect = spans.find((span) => span.name === "TcpClient.connect")
      assert.strictEqual(connect?.attributes.get("tcp.outcome"), "connected")
      assert.strictEqual(connect?.attributes.get("tcp.peer"), `127.0.0.1:${listener.port}`)
      const accept = spans.find((span) => span.name === "TcpListener.accept")
      assert.strictEqual(accept?.attributes.get("tcp.outcome"), "accepted")
      assert.match(String(accept?.attributes.get("tcp.peer")), /^127\.0\.0\.1:\d+$/)
      const app = spans.find((span) => span.name === "app.exchange")
      assert.isDefined(app)
      const calls = spans.filter((span) => span.name.startsWith("TcpSocket."))
      assert.deepStrictEqual(calls.map((span) => span.name), [
        "TcpSocket.send",
        "TcpSocket.sendv",
        "TcpSocket.recv",
        "TcpSocket.recvInto",
        "TcpSocket.recvv",
        "TcpSocket.recvSome",
        "TcpSocket.recv"
      ])
      for (const span of calls) {
        assert.strictEqual(span.parent._tag === "Some" ? span.parent.value : undefined, app)
        assert.strictEqual(span.status._tag, "Ended")
      }
      const exits = calls.map((span) => span.status._tag === "Ended" ? span.status.exit._tag : "open")
      assert.deepStrictEqual(exits, ["Success", "Success", "Success", "Success", "Success", "Success", "Failure"])
    }).pipe(Effect.provide(TcpMetrics.layerDataSpans))))
})
