/**
 * recvSome, stream, sink and the effect/socket adapter, on real loopback
 * sockets against plain node:net peers.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import { createHash, randomBytes } from "node:crypto"
import type * as Net from "node:net"
import { TcpClient, TcpSocket } from "../src/index.ts"
import { checkFdLeaks, closedPort, eventually, forkWaiting, rawServer, readAll, turns, withTcp } from "./helpers.ts"

const T = { timeout: "3 seconds" } as const
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** A node:net peer whose first connection is handed to `onConnection`; our socket connected to it. */
const connectedTo = (onConnection: (peer: Net.Socket) => void) =>
  Effect.gen(function*() {
    const server = yield* rawServer(onConnection)
    return yield* TcpClient.connect(server.address, T)
  })

/** Our socket connected to a node:net peer, and that peer (once it is accepted). */
const withPeer = Effect.gen(function*() {
  let accepted: Net.Socket | undefined
  const socket = yield* connectedTo((p) => {
    accepted = p
  })
  yield* eventually(() => accepted !== undefined, "the peer accepted our connection")
  const peer = accepted
  return peer === undefined ? assert.fail("no peer") : { socket, peer }
})

describe("TcpSocket streams", () => {
  checkFdLeaks()

  describe("recvSome", () => {
    it.live("returns what has arrived, at most max, and PeerClosed with no bytes at the end", () =>
      withTcp(Effect.gen(function*() {
        const { socket, peer } = yield* withPeer
        peer.end("hello world")
        // Both the bytes and the FIN are in the kernel, then this end's I/O runs.
        yield* eventually(() => peer.writableFinished, "the peer flushed its bytes and FIN")
        yield* turns()
        assert.strictEqual(new TextDecoder().decode(yield* socket.recvSome(5, T)), "hello")
        assert.strictEqual(new TextDecoder().decode(yield* socket.recvSome(100, T)), " world")
        const error = yield* Effect.flip(socket.recvSome(100, T))
        assert.strictEqual(error._tag, "PeerClosed")
        assert.strictEqual(error._tag === "PeerClosed" ? error.bytes.length : -1, 0)
      })))

    it.live("waits for the first byte; deadline 0 with nothing here is TimedOut and consumes nothing", () =>
      withTcp(Effect.gen(function*() {
        const { socket, peer } = yield* withPeer
        const early = yield* Effect.flip(socket.recvSome(10, { deadline: 0 }))
        assert.strictEqual(early._tag, "TimedOut")
        const waiting = yield* forkWaiting(socket.recvSome(10, T), "recvSome with nothing sent")
        peer.write("ab")
        assert.strictEqual(new TextDecoder().decode(yield* Fiber.join(waiting)), "ab")
      })))

    it.live("an interrupted recvSome consumes nothing", () =>
      withTcp(Effect.gen(function*() {
        const { socket, peer } = yield* withPeer
        const waiting = yield* forkWaiting(socket.recvSome(10, T), "recvSome with nothing sent")
        yield* Fiber.interrupt(waiting)
        peer.write("xyz")
        assert.strictEqual(new TextDecoder().decode(yield* socket.recv(3, T)), "xyz")
      })))

    it.live("max must be a positive integer", () =>
      withTcp(Effect.gen(function*() {
        const socket = yield* connectedTo(() => {})
        for (const max of [0, -1, 1.5, Number.NaN]) {
          const error = yield* Effect.flip(TcpSocket.recvSome(socket, max))
          assert.strictEqual(error._tag, "InvalidArgument", `max ${max}`)
        }
      })))
  })

  it.live("stream delivers every byte in order in chunks of at most chunkSize, ending at the FIN", () =>
    withTcp(Effect.gen(function*() {
      const data = randomBytes(1024 * 1024)
      const socket = yield* connectedTo((peer) => peer.end(data))
      const chunks = yield* Stream.runCollect(TcpSocket.stream(socket, { chunkSize: 4096 }))
      assert.strictEqual(sha256(Buffer.concat(chunks)), sha256(data))
      assert.isTrue(chunks.every((c) => c.length >= 1 && c.length <= 4096))
    })))

  it.live("socket.stream and socket.sink are the same as the module functions", () =>
    withTcp(Effect.gen(function*() {
      const data = randomBytes(64 * 1024)
      const socket = yield* connectedTo((peer) => {
        peer.on("data", (chunk: Buffer) => peer.write(chunk))
        peer.on("end", () => peer.end())
      })
      yield* Stream.make(data.subarray(0, 30000), data.subarray(30000)).pipe(Stream.run(socket.sink))
      yield* socket.done(T)
      const echoed = yield* Stream.runCollect(socket.stream)
      assert.strictEqual(sha256(Buffer.concat(echoed)), sha256(data))
    })))

  it.live("sink sends every chunk in order", () =>
    withTcp(Effect.gen(function*() {
      const data = randomBytes(512 * 1024)
      let received: Effect.Effect<Buffer, Error> = Effect.die("no connection")
      const socket = yield* connectedTo((peer) => {
        received = readAll(peer)
      })
      const pieces = Array.from({ length: 64 }, (_, i) => data.subarray(i * 8192, (i + 1) * 8192))
      yield* Stream.fromIterable(pieces).pipe(Stream.run(TcpSocket.sink(socket)))
      yield* socket.done(T)
      assert.strictEqual(sha256(yield* received), sha256(data))
    })))

  describe("toSocket (effect/socket)", () => {
    it.live("reads what the peer sends, ending with SocketCloseError 1000 at its FIN", () =>
      withTcp(Effect.gen(function*() {
        const data = randomBytes(256 * 1024)
        const socket = TcpSocket.toSocket(yield* connectedTo((peer) => peer.end(data)))
        const chunks: Array<Uint8Array> = []
        const error = yield* Effect.flip(Stream.runForEach(Socket.toStream(socket), (chunk) =>
          Effect.sync(() => {
            chunks.push(chunk)
          })))
        // Like NodeSocket's, the stream ends with a close error; every byte before it arrived.
        assert.strictEqual(error.reason._tag, "SocketCloseError")
        assert.strictEqual(error.reason._tag === "SocketCloseError" ? error.reason.code : 0, 1000)
        assert.strictEqual(sha256(Buffer.concat(chunks)), sha256(data))
      })))

    it.live("the writer sends bytes and strings; a CloseEvent sends our FIN", () =>
      withTcp(Effect.gen(function*() {
        let received: Effect.Effect<Buffer, Error> = Effect.die("no connection")
        const tcp = yield* connectedTo((peer) => {
          received = readAll(peer)
        })
        const socket = TcpSocket.toSocket(tcp)
        yield* Effect.scoped(Effect.gen(function*() {
          const writer = yield* socket.writer
          yield* writer.write(new TextEncoder().encode("bytes,"))
          yield* writer.writeAll(["and ", "strings"])
          yield* writer.write(new Socket.CloseEvent())
        }))
        assert.strictEqual((yield* received).toString(), "bytes,and strings")
      })))

    it.live("a reset reaches the reader as SocketReadError carrying ConnReset", () =>
      withTcp(Effect.gen(function*() {
        // Reset once our connect has completed (an immediate reset can beat the handshake: ConnReset on connect).
        const { socket: tcp, peer } = yield* withPeer
        peer.resetAndDestroy()
        const socket = TcpSocket.toSocket(tcp)
        const error = yield* Effect.flip(Effect.scoped(Effect.flatMap(socket.reader, (reader) => reader.pull)))
        assert.strictEqual(error.reason._tag, "SocketReadError")
        const cause = error.reason._tag === "SocketReadError" ? error.reason.cause : undefined
        assert.strictEqual((cause as { readonly _tag?: string } | undefined)?._tag, "ConnReset")
      })))
  })
})

describe("TcpClient.layerSocket (effect/socket's Socket service)", () => {
  checkFdLeaks()

  /** A Socket-based program, written for effect/socket only: send a line, read the echo until the peer's FIN. */
  const socketProgram = Effect.gen(function*() {
    const socket = yield* Socket.Socket
    const received: Array<Uint8Array> = []
    const reading = Effect.scoped(Effect.gen(function*() {
      const pull = yield* Socket.readerBytes(socket)
      for (let i = 0; i < 1000; i++) received.push(...(yield* pull)) // ends at the peer's FIN, long before
    }))
    const writing = Effect.scoped(Effect.gen(function*() {
      const writer = yield* socket.writer
      yield* writer.write("hello over effect-tcp")
      yield* writer.write(new Socket.CloseEvent())
    }))
    const [closed] = yield* Effect.all([Effect.flip(reading), writing], { concurrency: 2 })
    return { text: Buffer.concat(received).toString(), closed }
  })

  it.live("runs a Socket-based program over effect-tcp by swapping one layer", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* rawServer((peer) => {
        peer.on("data", (chunk: Buffer) => peer.write(chunk))
        peer.on("end", () => peer.end())
      })
      const result = yield* socketProgram.pipe(
        Effect.provide(TcpClient.layerSocket(server.address)),
        Effect.timeout("5 seconds")
      )
      assert.strictEqual(result.text, "hello over effect-tcp")
      assert.strictEqual(result.closed.reason._tag, "SocketCloseError")
    })))

  it.live("a refused connect is a SocketOpenError carrying ConnRefused", () =>
    withTcp(Effect.gen(function*() {
      const port = yield* closedPort
      const socket = yield* TcpClient.makeSocket(`127.0.0.1:${port}`, T)
      const error = yield* Effect.flip(Effect.scoped(socket.reader))
      assert.strictEqual(error.reason._tag, "SocketOpenError")
      const cause = error.reason._tag === "SocketOpenError" ? error.reason.cause : undefined
      assert.strictEqual((cause as { readonly _tag?: string } | undefined)?._tag, "ConnRefused")
    })))
})
