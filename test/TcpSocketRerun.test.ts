/**
 * An Effect is a description: running the same receive or send value twice
 * performs the call twice, each run its own receive (its own deadline and
 * progress), as with every Effect.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TcpMessage } from "../src/index.ts"
import { bothLayers, loopbackPair, onLayer, str, text } from "./helpers.ts"

describe("one effect value run twice", () => {
  for (const [name, layer] of bothLayers()) {
    it.live(`recv, recvUntil and send run again (${name})`, () =>
      onLayer(layer, Effect.gen(function*() {
        const { client, server } = yield* loopbackPair
        const sendAbcd = client.send(text("abcd"))
        yield* sendAbcd
        yield* client.send(text("efgh"))
        // Without options, the common case, which needs no clock.
        const four = server.recv(4)
        assert.strictEqual(str(yield* four), "abcd")
        assert.strictEqual(str(yield* four), "efgh")
        yield* client.send(text("xxxx"))
        const line = server.recvUntil("\r\n")
        const reading = yield* Effect.forkChild(Effect.zip(line, line))
        yield* client.send(text("\r\na\r\n"))
        const [first, second] = yield* Fiber.join(reading)
        assert.deepStrictEqual([str(first), str(second)], ["xxxx", "a"])
        yield* sendAbcd
        assert.strictEqual(str(yield* server.recv(4, { timeout: "5 seconds" })), "abcd")
        // Messages too: a crlf and a prefixed receive, each value run twice.
        const lines = yield* TcpMessage.crlf(server)
        yield* client.send(text("one\r\ntwo\r\n"))
        const nextLine = lines.recv()
        assert.deepStrictEqual([str(yield* nextLine), str(yield* nextLine)], ["one", "two"])
        const framed = yield* TcpMessage.prefix(server, { size: 1 })
        yield* client.send(new Uint8Array([1, 65, 1, 66]))
        const nextMessage = framed.recv()
        assert.deepStrictEqual([str(yield* nextMessage), str(yield* nextMessage)], ["A", "B"])
      })))
  }
})
