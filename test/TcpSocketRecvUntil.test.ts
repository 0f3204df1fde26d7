/**
 * `recvUntil`: the bytes before a delimiter, found in the storage slot in
 * place, under both layers (loopback and memory): delimiters split across
 * segments and across the ring's wrap, frames past `max`, frames longer
 * than the slot, the peer's FIN mid-frame, retries after a timeout, order
 * with exact receives, and bad input.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TcpClient, TcpError, TcpTest } from "../src/index.ts"
import type { TcpSocket } from "../src/index.ts"
import {
  bothLayers,
  checkFdLeaks,
  eventually,
  failsWith,
  loopbackPair,
  onLayer,
  pattern,
  str,
  text
} from "./helpers.ts"

checkFdLeaks()

const SLOT = 16 * 1024

const layers = bothLayers({ slots: 16, bufferSize: SLOT })

const T = { timeout: "10 seconds" } as const

const pair = loopbackPair
const on = onLayer

for (const [name, layer] of layers) {
  describe(`recvUntil (${name})`, () => {
    it.live("lines whose CRLF arrives one byte at a time", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const reading = yield* Effect.forkChild(
          Effect.all([server.recvUntil("\r\n", T), server.recvUntil("\r\n", T), server.recvUntil("\r\n", T)])
        )
        for (const byte of text("first\r\nsecond\r\n\r\n")) yield* client.send(new Uint8Array([byte]), T)
        assert.deepStrictEqual((yield* Fiber.join(reading)).map(str), ["first", "second", ""])
      })))

    it.live("a multi-byte delimiter across the ring's wrap", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        // Move the ring's start to 10 KiB, then send a frame whose delimiter lands across the 16 KiB end.
        yield* client.send(new Uint8Array(10 * 1024), T)
        yield* server.recv(10 * 1024, T)
        const head = pattern(SLOT - 10 * 1024 - 2, 3)
        yield* client.sendv([head, text("\r\n\r\nafter")], T)
        const frame = yield* server.recvUntil("\r\n\r\n", T)
        assert.deepStrictEqual(frame, head)
        assert.strictEqual(str(yield* server.recv(5, T)), "after")
      })))

    it.live("a frame past max is MessageTooLarge and consumes nothing when it fits the slot", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        // The frame's 16 bytes pass max 8: it fails once more than 8 bytes are there, delimiter or not.
        yield* client.send(text("0123456789abcdef\n"), T)
        yield* failsWith(() => server.recvUntil("\n", { ...T, max: 8 }), "MessageTooLarge")
        assert.strictEqual(str(yield* server.recv(17, T)), "0123456789abcdef\n")
        // Without a delimiter in sight, the bytes already past max say so.
        yield* client.send(text("0123456789"), T)
        yield* failsWith(() => server.recvUntil("\n", { ...T, max: 4 }), "MessageTooLarge")
        assert.strictEqual(str(yield* server.recv(10, T)), "0123456789")
      })))

    it.live("a frame longer than the slot, with a larger max, arrives whole; its delimiter may straddle what moved", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        for (const size of [SLOT - 1, SLOT, SLOT + 1, 3 * SLOT + 7, 100 * 1024]) {
          const frame = pattern(size, size)
          const sending = yield* Effect.forkChild(client.sendv([frame, text("<END>")], T))
          const got = yield* server.recvUntil("<END>", { ...T, max: 1024 * 1024 })
          yield* Fiber.join(sending)
          assert.strictEqual(got.length, size, `size ${size}`)
          assert.deepStrictEqual(got, frame, `size ${size}`)
        }
      })))

    it.live("the peer's FIN mid-frame is PeerClosed with the bytes", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* client.send(text("partial line"), T)
        yield* client.done(T)
        const error = yield* failsWith(() => server.recvUntil("\n", T), "PeerClosed")
        assert.strictEqual(error._tag === "PeerClosed" ? str(error.bytes) : "", "partial line")
      })))

    it.live("a recvUntil that times out on half a line consumes nothing; the retry returns the whole line", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* client.send(text("half a "), T)
        yield* failsWith(() => server.recvUntil("\n", { timeout: "50 millis" }), "TimedOut")
        yield* client.send(text("line\nnext"), T)
        assert.strictEqual(str(yield* server.recvUntil("\n", T)), "half a line")
        assert.strictEqual(str(yield* server.recv(4, T)), "next")
      })))

    it.live("interrupted while waiting: nothing consumed", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* client.send(text("abc"), T)
        const waiting = yield* Effect.forkChild(server.recvUntil("\n", T))
        yield* eventually(() => waiting.pollUnsafe() === undefined, "the receive waits")
        yield* Fiber.interrupt(waiting)
        yield* client.send(text("def\n"), T)
        assert.strictEqual(str(yield* server.recvUntil("\n", T)), "abcdef")
      })))

    it.live("recvUntil and exact receives take turns in call order", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const head = yield* Effect.forkChild(server.recvUntil("\r\n\r\n", T))
        yield* eventually(() => head.pollUnsafe() === undefined, "the head receive waits")
        const body = yield* Effect.forkChild(server.recv(5, T))
        yield* client.send(text("GET / HTTP/1.1\r\nHost: x\r\n\r\nhello"), T)
        assert.strictEqual(str(yield* Fiber.join(head)), "GET / HTTP/1.1\r\nHost: x")
        assert.strictEqual(str(yield* Fiber.join(body)), "hello")
      })))

    it.live("randomized frames, delimiters and segmentation: every frame whole and in order", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        let seed = 0x1234567
        const random = (below: number) => {
          seed ^= seed << 13
          seed ^= seed >>> 17
          seed ^= seed << 5
          return (seed >>> 0) % below
        }
        for (const delimiter of ["\n", "\r\n", "--boundary--"]) {
          const delim = text(delimiter)
          const frames = Array.from({ length: 60 }, (_, i) => pattern(random(3 * SLOT), i))
          const stream = new Uint8Array(frames.reduce((n, f) => n + f.length + delim.length, 0))
          let at = 0
          for (const frame of frames) {
            stream.set(frame, at)
            stream.set(delim, at + frame.length)
            at += frame.length + delim.length
          }
          const sending = yield* Effect.forkChild(Effect.gen(function*() {
            let offset = 0
            while (offset < stream.length) {
              const n = 1 + random(4096)
              yield* client.send(stream.subarray(offset, offset + n), T)
              offset += n
            }
          }))
          for (const [i, frame] of frames.entries()) {
            const got = yield* server.recvUntil(delimiter, { ...T, max: 3 * SLOT })
            assert.deepStrictEqual(got, frame, `${JSON.stringify(delimiter)} frame ${i}`)
          }
          yield* Fiber.join(sending)
        }
      })))

    it.live("bad delimiters and max are InvalidArgument", () =>
      on(layer, Effect.gen(function*() {
        const { server } = yield* pair
        const bad = (make: () => Effect.Effect<unknown, { readonly _tag: string }>, label: string) =>
          failsWith(make, "InvalidArgument", label)
        yield* bad(() => server.recvUntil(""), "empty string")
        yield* bad(() => server.recvUntil(new Uint8Array(0)), "empty bytes")
        yield* bad(() => server.recvUntil(42 as unknown as string), "a number")
        yield* bad(() => server.recvUntil(null as unknown as string), "null")
        yield* bad(() => server.recvUntil(new Uint8Array(SLOT + 1).fill(10)), "a delimiter longer than the slot")
        for (const max of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "8" as unknown as number]) {
          yield* bad(() => server.recvUntil("\n", { max }), `max ${String(max)}`)
        }
      })))
  })
}

describe("recvUntil, memory only", () => {
  it.effect("MessageTooLarge can be injected into the application's next recvUntil; nothing is consumed", () =>
    Effect.gen(function*() {
      const server = yield* TcpTest.listen("127.0.0.1:7000")
      const connecting = yield* Effect.forkChild(TcpClient.connect("127.0.0.1:7000"))
      const peer = yield* server.accept()
      const socket: TcpSocket.TcpSocket = yield* Fiber.join(connecting)
      const tooLarge = TcpError.make(TcpError.MessageTooLarge, "EMSGSIZE", "recv", "127.0.0.1:7000", "injected")
      yield* peer.failNext("recvUntil", tooLarge)
      yield* peer.send("line\n")
      const error = yield* Effect.flip(socket.recvUntil("\n"))
      assert.strictEqual(error._tag, "MessageTooLarge")
      assert.strictEqual(str(yield* socket.recvUntil("\n")), "line")
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))
})
