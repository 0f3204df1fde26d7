/**
 * The Node transport's two ways: Node's private fields where they behave as
 * expected, public APIs only with `EFFECT_TCP_PORTABLE=1` (npm test runs the
 * socket suites both ways). This file checks which way a socket took.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { NodeTransport, portable } from "../src/internal/node/transport.ts"
import { connectionOf } from "../src/internal/tcpSocket.ts"
import { TcpClient, TcpListener } from "../src/index.ts"
import { checkFdLeaks, roundTrip, withTcp } from "./helpers.ts"

checkFdLeaks()

const T = { timeout: "5 seconds" } as const

describe("the Node transport", () => {
  it.live("EFFECT_TCP_PORTABLE=1 selects the public path, and only it", () =>
    Effect.sync(() => assert.strictEqual(portable, process.env["EFFECT_TCP_PORTABLE"] === "1"))
  )

  it.live(`accepted sockets ${portable ? "copy Node's chunks into the slot" : "read into the slot through onread"}`, () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
      const server = yield* listener.accept(T)
      const accepted = connectionOf(server)?.transport
      const connected = connectionOf(client)?.transport
      assert.instanceOf(accepted, NodeTransport)
      assert.instanceOf(connected, NodeTransport)
      assert.strictEqual(accepted instanceof NodeTransport && accepted.copying, portable, "accepted socket")
      // A connected socket reads through onread either way: it is public.
      assert.strictEqual(connected instanceof NodeTransport && connected.copying, false, "connected socket")
      yield* client.send(new TextEncoder().encode("ping"), T)
      assert.strictEqual(new TextDecoder().decode(yield* server.recv(4, T)), "ping")
      yield* server.send(new TextEncoder().encode("pong"), T)
      assert.strictEqual(new TextDecoder().decode(yield* client.recv(4, T)), "pong")
      yield* Effect.all([client.close(T), server.close(T)], { concurrency: 2 })
    })))

  it.live("an echo through an accepted socket survives the slot filling and emptying many times", () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
      const server = yield* listener.accept(T)
      yield* Effect.forkScoped(Effect.forever(Effect.flatMap(server.recvSome(4096, T), (bytes) => server.send(bytes, T))))
      for (let i = 0; i < 20; i++) yield* roundTrip(client, `${i}:`.padEnd(40_000, String.fromCharCode(97 + (i % 26))))
    })))
})
