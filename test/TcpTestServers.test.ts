/**
 * The program's own servers under `TcpTest.layer`: `TcpListener.listen`,
 * `accept` and `serve` on the in-memory network, with no socket, deadlines
 * on `TestClock`, and errors injected on the server side.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { TcpClient, TcpError, TcpListener, TcpStorage, TcpTest } from "../src/index.ts"
import { eventually, failsWith, openFds } from "./helpers.ts"

const text = (s: string) => new TextEncoder().encode(s)
const str = (b: Uint8Array) => new TextDecoder().decode(b)

describe("servers in memory", () => {
  it.effect("port 0 picks a free in-memory port; listen, connect and accept open no descriptor", () =>
    Effect.gen(function*() {
      const before = openFds()
      const first = yield* TcpListener.listen("127.0.0.1:0")
      const second = yield* TcpListener.listen("127.0.0.1:0")
      assert.isAbove(first.port, 0)
      assert.notStrictEqual(first.port, second.port)
      const client = yield* TcpClient.connect(`127.0.0.1:${first.port}`)
      const server = yield* first.accept()
      yield* client.send(text("ping"))
      assert.strictEqual(str(yield* server.recv(4)), "ping")
      assert.strictEqual(String(server.remoteAddress?.port), String(client.localAddress?.port))
      assert.strictEqual(openFds(), before)
      yield* failsWith(() => TcpListener.listen(`127.0.0.1:${first.port}`), "AddrInUse")
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))

  it.effect("accept deadlines run on TestClock", () =>
    Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const accepting = yield* Effect.forkChild(Effect.flip(listener.accept({ timeout: "10 seconds" })))
      yield* TestClock.adjust("9 seconds")
      assert.isUndefined(accepting.pollUnsafe(), "the accept timed out before its deadline")
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(accepting)
      assert.strictEqual(error._tag, "TimedOut")
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))

  it.effect("a receive deadline on an in-memory socket runs on TestClock, through the core's one timer path", () =>
    Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`)
      const server = yield* listener.accept()
      const receiving = yield* Effect.forkChild(Effect.flip(server.recv(4, { timeout: "1 minute" })))
      yield* TestClock.adjust("59 seconds")
      assert.isUndefined(receiving.pollUnsafe())
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Fiber.join(receiving))._tag, "TimedOut")
      // Nothing was consumed: the retry gets the bytes.
      yield* client.send(text("late"))
      assert.strictEqual(str(yield* server.recv(4)), "late")
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))

  it.live("failAccept: serve meets the injected errors, retries, and then serves the waiting client", () =>
    Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const address = `127.0.0.1:${listener.port}`
      const emfile = TcpError.make(TcpError.TooManyOpenFiles, "EMFILE", "accept", address, "injected")
      yield* TcpTest.failAccept(address, emfile, { times: 2 })
      yield* failsWith(() => listener.accept({ deadline: 0 }), "TooManyOpenFiles", "an accept meets the first")
      yield* Effect.forkScoped(listener.pipe(TcpListener.serve((socket) =>
        Effect.flatMap(socket.recv(2), (bytes) => socket.send(bytes))
      )))
      const client = yield* TcpClient.connect(address, { timeout: "5 seconds" })
      yield* client.send(text("hi"))
      assert.strictEqual(str(yield* client.recv(2, { timeout: "5 seconds" })), "hi")
      yield* eventually(TcpStorage.stats.pipe(Effect.map((s) => s.inUse === 2)), "client and server hold a slot each")
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))
})
