/**
 * A MessageSocket's stream hands on, in one pull, every message buffered
 * behind the one it waited for: in order, each whole, ending at a FIN
 * between messages, and mixing with exact receives afterwards.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { TcpMessage } from "../src/index.ts"
import { bothLayers, loopbackPair, onLayer, str, text } from "./helpers.ts"

describe("TcpMessage stream", () => {
  for (const [name, layer] of bothLayers()) {
    it.live(`10,000 lines in a few writes arrive whole and in order (${name})`, () =>
      onLayer(layer, Effect.gen(function*() {
        const { client, server } = yield* loopbackPair
        const lines = yield* TcpMessage.crlf(server, { max: 64 })
        const expected = Array.from({ length: 10_000 }, (_, i) => `line ${i}`)
        const sending = yield* Effect.forkChild(Effect.gen(function*() {
          for (let i = 0; i < expected.length; i += 2_500) {
            yield* client.send(text(expected.slice(i, i + 2_500).map((line) => `${line}\r\n`).join("")))
          }
          yield* client.send(text("tail"))
        }))
        const chunks = yield* lines.stream.pipe(Stream.take(expected.length), Stream.chunks, Stream.runCollect)
        yield* Fiber.join(sending)
        const received = chunks.flatMap((chunk) => chunk.map(str))
        assert.deepStrictEqual(received, expected)
        if (name === "loopback") assert.isBelow(chunks.length, expected.length / 10, "messages come in batches")
        // What follows the last line is still there for an exact receive.
        assert.strictEqual(str(yield* server.recv(4, { timeout: "5 seconds" })), "tail")
      })))
  }
})
