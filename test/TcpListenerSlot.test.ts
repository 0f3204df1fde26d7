/**
 * Storage slots and accept: a slot is taken when a connection is, never by
 * an accept (or an idle `serve`) that is only waiting. When no slot can be
 * had for a connection an accept took (`OutOfMemory`, `TimedOut`,
 * interruption) the connection stays first in the queue; the listener's
 * close ends a wait for a slot with `Closed` and closes the connection.
 * Real loopback sockets; waits are on events or bounded polls.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { TcpClient, TcpListener, TcpNode, TcpStorage } from "../src/index.ts"
import {
  checkFdLeaks,
  echo4,
  echoServer,
  eventually,
  forkWaiting,
  plainExchange,
  rawClient,
  roundTrip,
  statsWhen,
  withTcp
} from "./helpers.ts"

const T = { timeout: "10 seconds" } as const
const bufferSize = 16 * 1024
const oneSlotFail = TcpNode.layerWith({ slots: 1, bufferSize, onExhausted: "fail" })
const oneSlotWait = TcpNode.layerWith({ slots: 1, bufferSize, onExhausted: "wait" })

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/** A plain client that wrote `message`; `gone` completes when the server closed the connection. */
const sender = (port: number, message: string) =>
  Effect.gen(function*() {
    const socket = yield* rawClient(port)
    const closed = Deferred.makeUnsafe<void>()
    socket.on("error", () => {})
    socket.on("end", () => socket.end())
    socket.on("close", () => Deferred.doneUnsafe(closed, Effect.void))
    socket.write(message)
    return { socket, gone: Deferred.await(closed) }
  })

/** Takes the pool's only slot in a scope of its own; closing that scope gives it back. */
const holdOnlySlot = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const slot = yield* TcpStorage.acquire().pipe(Scope.provide(scope))
  assert.strictEqual((yield* TcpStorage.stats).inUse, 1)
  return { slot, release: Scope.close(scope, Exit.void) }
})

describe("TcpListener storage slots", () => {
  checkFdLeaks()

  it.live("an idle serve holds no slot; while it serves one client it holds that client's only", () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      yield* forkWaiting(TcpListener.serve(listener, echo4), "serve with no client")
      const idle = yield* TcpStorage.stats
      assert.strictEqual(idle.inUse, 0, `an idle serve holds a slot: ${JSON.stringify(idle)}`)
      assert.strictEqual(idle.waiting, 0)
      const client = yield* rawClient(listener.port)
      assert.strictEqual(yield* plainExchange(client, "ping"), "ping")
      // serve is back in accept, waiting for the next client
      const serving = yield* TcpStorage.stats
      assert.strictEqual(serving.inUse, 1, `one client, one slot: ${JSON.stringify(serving)}`)
      yield* listener.close
    })))

  it.live("accepts that are only waiting hold no slot; each takes one when its connection comes", () =>
    withTcp(Effect.gen(function*() {
      const count = 8
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const accepts = yield* Effect.forEach(
        Array.from({ length: count }, (_, i) => i),
        (i) => forkWaiting(listener.accept({ deadline: -1 }), `accept ${i} with no client`)
      )
      const idle = yield* TcpStorage.stats
      assert.strictEqual(idle.inUse, 0, `waiting accepts hold slots: ${JSON.stringify(idle)}`)
      for (let i = 0; i < count; i++) yield* sender(listener.port, String.fromCharCode(65 + i))
      const sockets = yield* Effect.forEach(accepts, Fiber.join)
      const got = yield* Effect.forEach(sockets, (socket) => Effect.map(socket.recv(1, T), text))
      assert.sameMembers(got, Array.from({ length: count }, (_, i) => String.fromCharCode(65 + i)))
      assert.strictEqual((yield* TcpStorage.stats).inUse, count)
    })))

  it.live("with a 1-slot \"fail\" pool a client connects while serve is idle, and serve takes the next connection", () =>
    withTcp(
      Effect.gen(function*() {
        const peer = yield* echoServer()
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        yield* forkWaiting(TcpListener.serve(listener, echo4), "serve with no client")
        // the only slot is free for a client of this process
        const socket = yield* TcpClient.connect(peer.address, T)
        yield* roundTrip(socket, "through the only slot")
        yield* socket.close(T)
        // and for serve's next connection
        const client = yield* rawClient(listener.port)
        assert.strictEqual(yield* plainExchange(client, "pong"), "pong")
        yield* listener.close
      }),
      oneSlotFail
    ))

  it.live("pool exhausted (\"fail\"): an accept waits for a connection, then fails OutOfMemory and leaves it first in the queue", () =>
    withTcp(
      Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const held = yield* holdOnlySlot
        const waiting = yield* forkWaiting(
          listener.accept({ deadline: -1 }),
          "accept with no client and no free slot"
        )
        yield* sender(listener.port, "kept")
        const exit = yield* Fiber.await(waiting)
        const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
        assert.strictEqual(error?._tag === "Fail" ? error.error._tag : "none", "OutOfMemory")
        // not lost: the caller's own slot serves it (an exhausted pool does not matter then)
        const socket = yield* listener.accept({ storage: held.slot, timeout: "10 seconds" })
        assert.strictEqual(text(yield* socket.recv(4, T)), "kept")
        assert.strictEqual((yield* TcpStorage.stats).inUse, 1, "the socket lives in the caller's slot")
        yield* held.release
      }),
      oneSlotFail
    ))

  it.live("pool exhausted (\"wait\"): the wait for a slot counts against accept's deadline; timed out or interrupted, the connection stays queued", () =>
    withTcp(
      Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const held = yield* holdOnlySlot
        yield* sender(listener.port, "kept")
        const timedOut = yield* Effect.flip(listener.accept({ timeout: "200 millis" }))
        assert.strictEqual(timedOut._tag, "TimedOut")
        const waiting = yield* Effect.forkChild(listener.accept({ deadline: -1 }))
        yield* eventually(Effect.map(TcpStorage.stats, (s) => s.waiting === 1), "the accept waits for a slot")
        yield* Fiber.interrupt(waiting)
        assert.strictEqual((yield* statsWhen((s) => s.waiting === 0)).waiting, 0)
        yield* held.release
        const socket = yield* listener.accept(T)
        assert.strictEqual(text(yield* socket.recv(4, T)), "kept", "the connection was not lost")
      }),
      oneSlotWait
    ))

  it.live("listener.close ends an accept waiting for a slot with Closed and closes the connection it held", () =>
    withTcp(
      Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const held = yield* holdOnlySlot
        const client = yield* sender(listener.port, "lost")
        // long enough that only the close can end it
        const waiting = yield* Effect.forkChild(listener.accept({ timeout: "20 seconds" }))
        yield* eventually(Effect.map(TcpStorage.stats, (s) => s.waiting === 1), "the accept waits for a slot")
        yield* listener.close
        const error = yield* Effect.flip(Fiber.join(waiting))
        assert.strictEqual(error._tag, "Closed")
        yield* client.gone
        assert.strictEqual((yield* statsWhen((s) => s.waiting === 0)).waiting, 0)
        yield* held.release
      }),
      oneSlotWait
    ))
})
