/**
 * One program, two layers: the same scenarios run under `TcpNode.layer`
 * (loopback sockets) and `TcpTest.layer` (in memory, no socket), written
 * against the public API only, and must end the same way. Both layers run
 * the same connection rules (src/internal/core); only the transports differ.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { TcpClient, TcpListener } from "../src/index.ts"
import type { TcpSocket } from "../src/index.ts"
import { bothLayers, checkFdLeaks, eventually, failsWith, loopbackPair, onLayer, str, text } from "./helpers.ts"

checkFdLeaks()


const layers = bothLayers()

const T = { timeout: "5 seconds" } as const

/** A listener on a free loopback port, a client connected to it, and the server's end. */
const pair = loopbackPair

const closeBoth = (a: TcpSocket.TcpSocket, b: TcpSocket.TcpSocket) =>
  Effect.all([a.close(T), b.close(T)], { concurrency: 2, discard: true })

/** Runs a scenario on `layer` and checks every slot came back. */
const on = onLayer

for (const [name, layer] of layers) {
  describe(`conformance: ${name}`, () => {
    it.live("exchange both ways with recv, recvInto and recvv", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* client.send(text("hello world"), T)
        assert.strictEqual(str(yield* server.recv(5, T)), "hello")
        const into = new Uint8Array(1)
        yield* server.recvInto(into, T)
        assert.strictEqual(str(into), " ")
        const parts = [new Uint8Array(2), new Uint8Array(3)]
        yield* server.recvv(parts, T)
        assert.deepStrictEqual(parts.map(str), ["wo", "rld"])
        yield* server.sendv([text("ab"), text("cd")], T)
        assert.strictEqual(str(yield* client.recv(4, T)), "abcd")
        yield* closeBoth(client, server)
      })))

    it.live("a receive larger than what was sent, then the peer's done: PeerClosed with the bytes", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* client.send(text("abc"), T)
        yield* client.done(T)
        const error = yield* failsWith(() => server.recv(10, T), "PeerClosed")
        assert.strictEqual(error._tag === "PeerClosed" ? str(error.bytes) : "", "abc")
        yield* closeBoth(client, server)
      })))

    it.live("send after done is BrokenPipe; receiving goes on", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* client.done(T)
        yield* failsWith(() => client.send(text("x"), T), "BrokenPipe")
        yield* server.send(text("still"), T)
        assert.strictEqual(str(yield* client.recv(5, T)), "still")
        yield* closeBoth(client, server)
      })))

    it.live("deadline 0 with nothing buffered is TimedOut, and a retry gets the bytes", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* failsWith(() => server.recv(3, { deadline: 0 }), "TimedOut")
        yield* client.send(text("xyz"), T)
        assert.strictEqual(str(yield* server.recv(3, T)), "xyz")
        yield* closeBoth(client, server)
      })))

    it.live("calls after close fail Closed", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* closeBoth(client, server)
        yield* failsWith(() => client.send(text("x"), T), "Closed")
        yield* failsWith(() => client.recv(1, T), "Closed")
        yield* failsWith(() => client.close(T), "Closed")
      })))

    it.live("concurrent receives are served in call order", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const first = yield* Effect.forkChild(server.recv(3, T))
        yield* eventually(() => first.pollUnsafe() === undefined, "the first receive waits")
        const second = yield* Effect.forkChild(server.recv(3, T))
        yield* client.send(text("onetwo"), T)
        assert.strictEqual(str(yield* Fiber.join(first)), "one")
        assert.strictEqual(str(yield* Fiber.join(second)), "two")
        yield* closeBoth(client, server)
      })))

    it.live("concurrent sends are never interleaved", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const size = 256 * 1024
        const frames = ["a", "b", "c", "d"].map((c) => new Uint8Array(size).fill(c.charCodeAt(0)))
        const sending = yield* Effect.forkChild(Effect.forEach(frames, (f) => client.send(f, T), { concurrency: 4 }))
        const got = yield* server.recv(size * frames.length, { timeout: "10 seconds" })
        yield* Fiber.join(sending)
        for (let i = 0; i < frames.length; i++) {
          const frame = got.subarray(i * size, (i + 1) * size)
          assert.isTrue(frame.every((b) => b === frame[0]), `frame ${i} is whole`)
        }
        yield* closeBoth(client, server)
      })))

    it.live("the peer's abort with unread bytes: ConnReset", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* client.send(text("xunread"), T)
        // The first byte is in: the rest came with it and stays unread, so the abort is an RST.
        assert.strictEqual(str(yield* server.recv(1, T)), "x")
        yield* server.abort
        yield* failsWith(() => client.recv(1, T), "ConnReset")
      })))

    it.live("an abort after done, with unread bytes, completes; the peer saw our FIN", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* client.done(T)
        yield* server.send(text("xy"), T)
        assert.strictEqual(str(yield* client.recv(1, T)), "x")
        yield* client.abort
        yield* failsWith(() => server.recv(1, T), "PeerClosed")
        yield* server.close(T)
      })))

    it.live("a close that times out behind a stuck send, with unread bytes, still aborts and returns", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        // The client leaves a byte unread, and its outbound is stuck on a server that never reads.
        yield* server.send(text("u"), T)
        yield* eventually(client.recv(0, T).pipe(Effect.as(true)), "the client is up")
        yield* failsWith(() => client.send(new Uint8Array(16 * 1024 * 1024), { timeout: "200 millis" }), "TimedOut")
        // The FIN cannot leave before the stuck bytes: close times out, and its abort must still end.
        yield* failsWith(() => client.close({ timeout: "200 millis" }), ["TimedOut", "ConnReset"])
        yield* failsWith(() => client.recv(1, T), "Closed")
        yield* server.abort
      })))

    it.live("close waits for the peer's FIN", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const closing = yield* Effect.forkChild(client.close(T))
        yield* failsWith(() => server.recv(1, T), "PeerClosed")
        assert.isUndefined(closing.pollUnsafe(), "close returned before the peer's FIN")
        yield* server.close(T)
        yield* Fiber.join(closing)
      })))

    it.live("a server written with TcpListener.serve handles 50 clients", () =>
      on(layer, Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const served = yield* Deferred.make<void>()
        let handled = 0
        yield* Effect.forkScoped(listener.pipe(TcpListener.serve((socket) =>
          Effect.gen(function*() {
            const request = yield* socket.recv(4, T)
            yield* socket.send(request.map((b) => b + 1), T)
            handled += 1
            if (handled === 50) yield* Deferred.succeed(served, undefined)
          })
        )))
        const replies = yield* Effect.forEach(
          Array.from({ length: 50 }, (_, i) => i),
          (i) =>
            Effect.scoped(Effect.gen(function*() {
              const socket = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
              yield* socket.send(new Uint8Array([i, i, i, i]), T)
              return yield* socket.recv(4, T)
            })),
          { concurrency: 10 }
        )
        yield* Deferred.await(served)
        replies.forEach((reply, i) => assert.deepStrictEqual([...reply], [i + 1, i + 1, i + 1, i + 1]))
        yield* listener.close
      })))
  })
}
