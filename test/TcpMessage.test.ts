/**
 * `TcpMessage`: libdill's crlf, suffix and prefix protocols under both
 * layers (loopback and memory), and prefix framing against a plain node:net
 * peer: round trips, empty messages, messages split byte by byte, messages
 * containing the delimiter or too long (nothing sent), `max` on receive, the
 * FIN between and inside messages, exact receives after messages, and
 * concurrent senders.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import type * as Net from "node:net"
import { TcpClient, TcpError, TcpMessage, TcpTest } from "../src/index.ts"
import {
  bothLayers,
  bytesTaken,
  checkFdLeaks,
  eventually,
  failsWith,
  loopbackPair,
  onLayer,
  pattern,
  rawServer,
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
  describe(`TcpMessage (${name})`, () => {
    it.live("crlf and suffix round trips: empty messages, and messages split byte by byte", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        for (const make of [
          (s: typeof client) => TcpMessage.crlf(s),
          (s: typeof client) => TcpMessage.suffix(s, "<END>"),
          (s: typeof client) => TcpMessage.suffix(s, new Uint8Array([0]))
        ]) {
          const sender = yield* make(client)
          const receiver = yield* make(server)
          const messages = ["hello", "", "a longer message", ""]
          for (const m of messages) yield* sender.send(text(m), T)
          for (const m of messages) assert.strictEqual(str(yield* receiver.recv(T)), m)
          // The same frames, written one byte at a time through the socket beneath.
          const reading = yield* Effect.forkChild(Effect.all(messages.map(() => receiver.recv(T))))
          const framing = receiver.toJSON() as { framing: { delimiter: Array<number> } }
          const delimiter = new Uint8Array(framing.framing.delimiter)
          for (const m of messages) {
            for (const byte of [...text(m), ...delimiter]) yield* client.send(new Uint8Array([byte]), T)
          }
          assert.deepStrictEqual((yield* Fiber.join(reading)).map(str), messages)
        }
      })))

    it.live("sendv's parts make one message", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const sender = yield* TcpMessage.crlf(client)
        yield* sender.sendv([text("GET"), text(" "), text("key")], T)
        assert.strictEqual(str(yield* server.recv(9, T)), "GET key\r\n")
        const prefixed = yield* TcpMessage.prefix(client, { size: 2 })
        yield* prefixed.sendv([text("ab"), text("c")], T)
        assert.deepStrictEqual([...(yield* server.recv(5, T))], [0, 3, 97, 98, 99])
      })))

    it.live("a message containing the delimiter is InvalidArgument, and nothing is sent", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const lines = yield* TcpMessage.crlf(client)
        yield* failsWith(() => lines.send(text("a\r\nb"), T), "InvalidArgument")
        yield* failsWith(() => lines.sendv([text("a\r"), text("\nb")], T), "InvalidArgument")
        // A message ending with the start of a self-overlapping delimiter would be cut short.
        const doubled = yield* TcpMessage.suffix(client, "aa")
        yield* failsWith(() => doubled.send(text("xa"), T), "InvalidArgument")
        yield* failsWith(() => doubled.sendv([text("x"), text("a")], T), "InvalidArgument")
        yield* lines.send(text("ok"), T)
        // The first bytes the peer gets are the valid message's.
        assert.strictEqual(str(yield* server.recv(4, T)), "ok\r\n")
      })))

    it.live("a message longer than max or than the prefix can express is MessageTooLarge, and nothing is sent", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const lines = yield* TcpMessage.crlf(client, { max: 4 })
        yield* failsWith(() => lines.send(text("12345"), T), "MessageTooLarge")
        yield* failsWith(() => lines.sendv([text("123"), text("45")], T), "MessageTooLarge")
        const small = yield* TcpMessage.prefix(client, { size: 1, max: 1000 })
        yield* failsWith(() => small.send(new Uint8Array(256), T), "MessageTooLarge")
        yield* small.send(new Uint8Array(255), T)
        const header = yield* server.recv(1, T)
        assert.strictEqual(header[0], 255)
        yield* server.recv(255, T)
        yield* lines.send(text("1234"), T)
        assert.strictEqual(str(yield* server.recv(6, T)), "1234\r\n")
      })))

    it.live("sink sends each message; a batch holding a bad message sends none of it", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const lines = yield* TcpMessage.crlf(client, { max: 8 })
        yield* Stream.make(text("a"), text(""), text("bc")).pipe(Stream.run(lines.sink))
        yield* failsWith(() => Stream.make(text("ok"), text("x\r\ny")).pipe(Stream.run(lines.sink)), "InvalidArgument")
        yield* failsWith(() => Stream.make(text("ok"), text("123456789")).pipe(Stream.run(lines.sink)), "MessageTooLarge")
        yield* lines.send(text("end"), T)
        assert.strictEqual(str(yield* server.recv(14, T)), "a\r\n\r\nbc\r\nend\r\n")
      })))

    it.live("max on receive: MessageTooLarge", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const lines = yield* TcpMessage.crlf(server, { max: 4 })
        yield* client.send(text("12345\r\n"), T)
        yield* failsWith(() => lines.recv(T), "MessageTooLarge")
        // Delimited: nothing consumed.
        assert.strictEqual(str(yield* server.recv(7, T)), "12345\r\n")
        const prefixed = yield* TcpMessage.prefix(server, { max: 4 })
        yield* client.send(new Uint8Array([0, 0, 0, 5, 1, 2, 3, 4, 5]), T)
        yield* failsWith(() => prefixed.recv(T), "MessageTooLarge")
        // Prefixed: the header was read in place, nothing consumed.
        assert.deepStrictEqual([...(yield* server.recv(9, T))], [0, 0, 0, 5, 1, 2, 3, 4, 5])
      })))

    it.live("a prefixed receive that times out or is interrupted consumes nothing; the retry gets the message", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const prefixed = yield* TcpMessage.prefix(server, { size: 2 })
        // Half a header, then a header and half a body.
        yield* client.send(new Uint8Array([0]), T)
        yield* failsWith(() => prefixed.recv({ timeout: "50 millis" }), "TimedOut")
        yield* client.send(new Uint8Array([4, 1, 2]), T)
        yield* failsWith(() => prefixed.recv({ timeout: "50 millis" }), "TimedOut")
        const waiting = yield* Effect.forkChild(prefixed.recv(T))
        yield* eventually(() => waiting.pollUnsafe() === undefined, "the receive waits")
        yield* Fiber.interrupt(waiting)
        yield* client.send(new Uint8Array([3, 4]), T)
        assert.deepStrictEqual([...(yield* prefixed.recv(T))], [1, 2, 3, 4])
      })))

    it.live("concurrent prefixed receives each get whole messages, in call order", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const sender = yield* TcpMessage.prefix(client, { size: 1 })
        const receiver = yield* TcpMessage.prefix(server, { size: 1 })
        const reading = yield* Effect.forkChild(
          Effect.all(Array.from({ length: 4 }, () => receiver.recv(T)), { concurrency: "unbounded" })
        )
        for (const m of ["a", "bb", "ccc", "dddd"]) {
          for (const byte of [m.length, ...text(m)]) yield* client.send(new Uint8Array([byte]), T)
        }
        assert.deepStrictEqual((yield* Fiber.join(reading)).map(str), ["a", "bb", "ccc", "dddd"])
        assert.isDefined(sender)
      })))

    it.live("the stream ends at a FIN between messages; a FIN inside one is PeerClosed", () =>
      on(layer, Effect.gen(function*() {
        for (const make of [TcpMessage.crlf, (s: Parameters<typeof TcpMessage.crlf>[0]) => TcpMessage.prefix(s)]) {
          const { client, server } = yield* pair
          const sender = yield* make(client)
          const receiver = yield* make(server)
          yield* sender.send(text("one"), T)
          yield* sender.send(text("two"), T)
          yield* client.done(T)
          const all = yield* Stream.runCollect(receiver.stream)
          assert.deepStrictEqual(Array.from(all).map(str), ["one", "two"])
        }
        for (const [make, partial] of [
          [TcpMessage.crlf, text("half")],
          [(s: Parameters<typeof TcpMessage.crlf>[0]) => TcpMessage.prefix(s), new Uint8Array([0, 0, 0, 9, 1, 2])],
          [(s: Parameters<typeof TcpMessage.crlf>[0]) => TcpMessage.prefix(s), new Uint8Array([0, 0])]
        ] as const) {
          const { client, server } = yield* pair
          const sender = yield* make(client)
          const receiver = yield* make(server)
          yield* sender.send(text("whole"), T)
          yield* client.send(partial, T)
          yield* client.done(T)
          const error = yield* failsWith(() => Stream.runCollect(receiver.stream), "PeerClosed")
          assert.isTrue(error._tag === "PeerClosed" && error.bytes.length > 0)
        }
      })))

    it.live("exact receives on the socket continue where the messages stopped", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        const lines = yield* TcpMessage.crlf(server)
        yield* client.send(text("VALUE k 5\r\nhello\r\nEND\r\n"), T)
        assert.strictEqual(str(yield* lines.recv(T)), "VALUE k 5")
        assert.strictEqual(str(yield* server.recv(7, T)), "hello\r\n")
        assert.strictEqual(str(yield* lines.recv(T)), "END")
        const prefixed = yield* TcpMessage.prefix(server, { size: 1 })
        yield* client.send(new Uint8Array([2, 7, 8, 9]), T)
        assert.deepStrictEqual([...(yield* prefixed.recv(T))], [7, 8])
        assert.deepStrictEqual([...(yield* server.recv(1, T))], [9])
      })))

    it.live("concurrent sends from several fibers never interleave", () =>
      on(layer, Effect.gen(function*() {
        const { client, server } = yield* pair
        for (const make of [
          (s: typeof client) => TcpMessage.suffix(s, "\n", { max: 1024 * 1024 }),
          (s: typeof client) => TcpMessage.prefix(s, { max: 1024 * 1024 })
        ]) {
          const sender = yield* make(client)
          const receiver = yield* make(server)
          const fibers = 8
          const each = 8
          // Messages far larger than the slot, many megabytes in all: sends wait part-way, so
          // a message and its framing sent apart would let another fiber's bytes in between.
          const message = (fiber: number, i: number) => {
            const bytes = pattern(150_000 + fiber * 1000 + i, fiber)
            bytes[0] = 0x30 + fiber
            return bytes
          }
          const sending = yield* Effect.forkChild(Effect.all(
            Array.from({ length: fibers }, (_, f) =>
              Effect.forEach(Array.from({ length: each }, (_, i) => i), (i) => sender.send(message(f, i), T))),
            { concurrency: "unbounded" }
          ))
          const next = new Array<number>(fibers).fill(0)
          for (let n = 0; n < fibers * each; n++) {
            const got = yield* receiver.recv(T)
            const f = (got[0] ?? 0) - 0x30
            assert.isTrue(f >= 0 && f < fibers, `frame ${n}: fiber ${f}`)
            const want = message(f, next[f] ?? 0)
            assert.deepStrictEqual(got, want, `frame ${n} from fiber ${f}`)
            next[f] = (next[f] ?? 0) + 1
          }
          yield* Fiber.join(sending)
        }
      })), 60_000)
  })
}

describe("TcpMessage.prefix against a node:net peer", () => {
  const sizes = [0, 1, 65_535, 70_000, 1024 * 1024]
  const frames = (size: 2 | 4, endian: "big" | "little") =>
    Buffer.concat(sizes.map((n) => {
      const header = Buffer.alloc(size)
      if (size === 2) endian === "big" ? header.writeUInt16BE(Math.min(n, 65_535)) : header.writeUInt16LE(Math.min(n, 65_535))
      else endian === "big" ? header.writeUInt32BE(n) : header.writeUInt32LE(n)
      return Buffer.concat([header, Buffer.from(pattern(size === 2 ? Math.min(n, 65_535) : n, n))])
    }))

  for (const [size, endian] of [[4, "big"], [2, "little"]] as const) {
    it.live(`${size}-byte ${endian}-endian headers: sizes ${sizes.join(", ")}`, () =>
      on(layers[0]![1], Effect.gen(function*() {
        const peer = yield* rawServer((socket: Net.Socket) => {
          socket.on("error", () => {})
          socket.end(frames(size, endian))
        })
        const socket = yield* TcpClient.connect(peer.address, T)
        const messages = yield* TcpMessage.prefix(socket, { size, endian, max: 1024 * 1024 })
        const got = yield* Stream.runCollect(messages.stream)
        const expected = sizes.map((n) => size === 2 ? Math.min(n, 65_535) : n)
        assert.deepStrictEqual(Array.from(got).map((m) => m.length), expected)
        for (const [i, n] of sizes.entries()) assert.deepStrictEqual(Array.from(got)[i], pattern(expected[i] ?? 0, n))
        yield* eventually(() => bytesTaken(socket) === frames(size, endian).length, "every byte taken")
      })), 60_000)
  }

  it.live("what we send, a node:net peer reads as 8-byte little-endian frames", () =>
    on(layers[0]![1], Effect.gen(function*() {
      const received: Array<Buffer> = []
      let ended = false
      const peer = yield* rawServer((socket: Net.Socket) => {
        socket.on("error", () => {})
        socket.on("data", (chunk: Buffer) => received.push(chunk))
        socket.on("end", () => {
          ended = true
          socket.end()
        })
      })
      const socket = yield* TcpClient.connect(peer.address, T)
      const messages = yield* TcpMessage.prefix(socket, { size: 8, endian: "little", max: 100_000 })
      yield* Stream.make(text("a"), new Uint8Array(0), pattern(70_000, 1)).pipe(Stream.run(messages.sink))
      yield* socket.done(T)
      yield* eventually(() => ended, "the peer read to the FIN")
      const all = Buffer.concat(received)
      let at = 0
      const bodies: Array<Buffer> = []
      while (at < all.length) {
        const n = Number(all.readBigUInt64LE(at))
        bodies.push(all.subarray(at + 8, at + 8 + n))
        at += 8 + n
      }
      assert.deepStrictEqual(bodies.map((b) => b.length), [1, 0, 70_000])
      assert.deepStrictEqual(new Uint8Array(bodies[2]!), pattern(70_000, 1))
      yield* socket.close(T)
    })), 30_000)

  it.live("an 8-byte length past Number.MAX_SAFE_INTEGER is MessageTooLarge", () =>
    on(layers[0]![1], Effect.gen(function*() {
      const peer = yield* rawServer((socket: Net.Socket) => {
        socket.on("error", () => {})
        const header = Buffer.alloc(8)
        header.writeBigUInt64BE(2n ** 53n)
        socket.end(header)
      })
      const socket = yield* TcpClient.connect(peer.address, T)
      const messages = yield* TcpMessage.prefix(socket, { size: 8, max: Number.MAX_SAFE_INTEGER })
      yield* failsWith(() => messages.recv(T), "MessageTooLarge")
    })))
})

describe("README", () => {
  it.live("the Messages snippet runs against a memcached-like node:net peer", () =>
    on(layers[0]![1], Effect.gen(function*() {
      const peer = yield* rawServer((socket: Net.Socket) => {
        socket.on("error", () => {})
        let got = ""
        socket.on("data", (chunk: Buffer) => {
          got += chunk.toString()
          if (got === "get greeting\r\n") socket.end("VALUE greeting 0 5\r\nhello\r\nEND\r\n")
        })
      })
      assert.strictEqual(yield* readmeSnippet(peer.address), "hello")
    })))
})

// The README's "Messages" snippet, verbatim apart from the address.
const readmeSnippet = (address: string) =>
  Effect.gen(function*() {
    const socket = yield* TcpClient.connect(address, { timeout: "2 seconds" })
    const lines = yield* TcpMessage.crlf(socket, { max: 1024 })
    yield* lines.send(new TextEncoder().encode("get greeting"))
    const header = new TextDecoder().decode(yield* lines.recv({ timeout: "2 seconds" })) // "VALUE greeting 0 5"
    const length = Number(header.split(" ")[3])
    const value = yield* socket.recv(length + 2, { timeout: "2 seconds" }) // the body and its CRLF, exactly
    yield* lines.recv({ timeout: "2 seconds" }) // "END"
    return new TextDecoder().decode(value.subarray(0, length))
  }).pipe(Effect.scoped)

describe("TcpMessage, memory only", () => {
  it.effect("MessageTooLarge injected into \"recvUntil\" fails the next message receive, prefixed too; nothing consumed", () =>
    Effect.gen(function*() {
      const server = yield* TcpTest.listen("127.0.0.1:7000")
      const connecting = yield* Effect.forkChild(TcpClient.connect("127.0.0.1:7000"))
      const peer = yield* server.accept()
      const socket = yield* Fiber.join(connecting)
      const tooLarge = TcpError.make(TcpError.MessageTooLarge, "EMSGSIZE", "recv", "127.0.0.1:7000", "injected")
      const lines = yield* TcpMessage.crlf(socket)
      const prefixed = yield* TcpMessage.prefix(socket, { size: 1 })
      yield* peer.send("line\r\n")
      yield* peer.send(new Uint8Array([1, 9]))
      yield* peer.failNext("recvUntil", tooLarge)
      assert.strictEqual((yield* Effect.flip(lines.recv()))._tag, "MessageTooLarge")
      assert.strictEqual(str(yield* lines.recv()), "line")
      yield* peer.failNext("recvUntil", tooLarge)
      assert.strictEqual((yield* Effect.flip(prefixed.recv()))._tag, "MessageTooLarge")
      assert.deepStrictEqual([...(yield* prefixed.recv())], [9])
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))
})
