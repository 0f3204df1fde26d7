/**
 * Hostile TLS peers on loopback: clients that stall, send half a
 * ClientHello or reset mid-handshake, by the thousand, against a TLS
 * listener's `serve`; accepts and connects interrupted during their
 * handshake; a TLS server flooding a client that reads nothing. Nothing
 * leaks (descriptors, storage slots), nobody hostile reaches a handler,
 * and memory stays bounded by the slot.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer } from "effect"
import type { Scope } from "effect"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { TcpClient, TcpListener, TcpNode, TcpStorage } from "../../src/index.ts"
import type { TcpSocket, TcpTls } from "../../src/index.ts"
import { connectionOf } from "../../src/internal/tcpSocket.ts"
import {
  awaitDone,
  checkFdLeaks,
  eventually,
  expectPoolIdle,
  fdsBackTo,
  failsWith,
  handshakesFailed,
  openFds,
  pollUntil,
  rawServer,
  statsWhen,
  str,
  withTcp
} from "../helpers.ts"
import { findOpenssl, makeCertificates } from "./certs.ts"
import { rawTlsServer } from "./node-tls.ts"

const openssl = findOpenssl("tls/hostile")
const T = { timeout: "10 seconds" } as const

/** Enough slots for a whole batch of hostile clients at once. */
const SLOTS = 256
const BUFFER = 16 * 1024
const Tcp = TcpNode.layerWith({ slots: SLOTS, bufferSize: BUFFER }).pipe(Layer.orDie)

/**
 * The first bytes a real node:tls client writes (its ClientHello, in one
 * record): a plain server takes them and drops the client.
 */
const clientHello: Effect.Effect<Buffer, never, Scope.Scope> = Effect.gen(function*() {
  let first: Buffer | undefined
  const server = yield* rawServer((socket) => {
    socket.on("error", () => {})
    socket.once("data", (chunk: Buffer) => {
      first = chunk
      socket.destroy()
    })
  })
  const client = Tls.connect({ port: server.port, host: "127.0.0.1", servername: "localhost" })
  client.on("error", () => {})
  yield* Effect.addFinalizer(() => Effect.sync(() => client.destroy()))
  yield* eventually(() => first !== undefined, "a node:tls client wrote its ClientHello")
  const hello = first ?? Buffer.alloc(0)
  // A handshake record (type 22) holding a ClientHello (type 1).
  assert.strictEqual(hello[0], 22)
  assert.strictEqual(hello[5], 1)
  return hello
})

type Hostility = "silent" | "halfHello" | "truncatedRecord" | "resetAfterServerHello" | "resetAfterHalfHello"
const HOSTILITIES: ReadonlyArray<Hostility> = [
  "silent",
  "halfHello",
  "truncatedRecord",
  "resetAfterServerHello",
  "resetAfterHalfHello"
]

/**
 * One hostile client: connects, misbehaves as `kind` says, and succeeds
 * once its socket closed (the server dropped it, or it reset itself).
 * Fails if it connected and then got anything like a finished handshake:
 * none of these can finish one.
 */
const hostileClient = (port: number, kind: Hostility, hello: Buffer): Effect.Effect<void, Error> =>
  Effect.callback<void, Error>((resume) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    socket.on("error", () => {})
    socket.once("close", () => resume(Effect.void))
    socket.once("connect", () => {
      switch (kind) {
        case "silent":
          return
        case "halfHello":
          socket.write(hello.subarray(0, hello.length >> 1))
          return
        case "truncatedRecord":
          // A record header announcing 512 bytes, then only 10 of them.
          socket.write(Buffer.concat([Buffer.from([22, 3, 1, 2, 0]), hello.subarray(5, 15)]))
          return
        case "resetAfterServerHello":
          socket.write(hello)
          // The server answered (ServerHello onwards): reset in the middle of its handshake.
          socket.once("data", () => socket.resetAndDestroy())
          return
        case "resetAfterHalfHello":
          socket.write(hello.subarray(0, hello.length >> 1), () => socket.resetAndDestroy())
          return
      }
    })
    return Effect.sync(() => socket.destroy())
  })

/** A node:tls client that completes its handshake (trusting `ca`), sends `message` and reads as many bytes back. */
const tlsExchange = (port: number, ca: string, message: string): Effect.Effect<string, Error> =>
  Effect.callback<string, Error>((resume) => {
    const socket = Tls.connect({ port, host: "127.0.0.1", servername: "localhost", ca })
    let got = ""
    socket.on("error", (error) => resume(Effect.fail(error)))
    socket.once("secureConnect", () => socket.write(message))
    socket.on("data", (chunk: Buffer) => {
      got += chunk.toString()
      if (got.length >= message.length) {
        socket.end()
        resume(Effect.succeed(got))
      }
    })
    return Effect.sync(() => socket.destroy())
  })

/**
 * Fresh certificates, a real ClientHello to misbehave with, and a listener
 * on a free loopback port serving TLS with the localhost certificate (and
 * `tls` added), listening with `options`.
 */
const tlsListenerAndHello = (
  tls: Partial<TcpTls.ServerOptions> = {},
  options: Omit<TcpListener.ListenOptions, "tls"> = {}
) =>
  Effect.gen(function*() {
    const certs = yield* makeCertificates(openssl ?? "openssl")
    const hello = yield* clientHello
    const listener = yield* TcpListener.listen("127.0.0.1:0", {
      ...options,
      tls: { cert: certs.server.cert, key: certs.server.key, ...tls }
    })
    return { certs, hello, listener }
  })

/** The handler: echoes one 4-byte message. Only a client that finished its handshake may reach it. */
const echoOnce = (socket: TcpSocket.TcpSocket) =>
  Effect.flatMap(socket.recv(4, T), (bytes) => socket.send(bytes, T))

describe.skipIf(openssl === undefined)("hostile TLS peers", () => {
  checkFdLeaks()

  it.live("1,000 clients that stall, send half a ClientHello or reset mid-handshake: serve leaks nothing", () =>
    withTcp(
      Effect.gen(function*() {
        const { certs, hello, listener } = yield* tlsListenerAndHello({ handshakeTimeout: "300 millis" }, { backlog: 512 })
        let handled = 0
        yield* Effect.forkChild(listener.pipe(TcpListener.serve((socket) => {
          handled += 1
          return echoOnce(socket)
        })))
        const before = openFds()
        const CLIENTS = 1000
        const BATCH = 200
        for (let start = 0; start < CLIENTS; start += BATCH) {
          yield* Effect.forEach(
            Array.from({ length: BATCH }, (_, i) => HOSTILITIES[(start + i) % HOSTILITIES.length] ?? "silent"),
            (kind) => hostileClient(listener.port, kind, hello),
            { concurrency: "unbounded", discard: true }
          )
        }
        yield* eventually(
          () => handshakesFailed(listener) >= CLIENTS,
          "every hostile handshake was counted as failed"
        )
        assert.strictEqual(handshakesFailed(listener), CLIENTS)
        assert.strictEqual(handled, 0, "a hostile client reached the handler")
        const stats = yield* statsWhen((s) => s.inUse === 0)
        assert.strictEqual(stats.inUse, 0, `slots still held: ${JSON.stringify(stats)}`)
        yield* fdsBackTo(before, "descriptors leaked by the hostile clients")
        // The listener still serves: a real TLS client gets its echo through the handler.
        assert.strictEqual(yield* tlsExchange(listener.port, certs.ca.cert, "ping"), "ping")
        assert.strictEqual(handled, 1)
        yield* listener.close
      }),
      Tcp
    ))

  it.live("accept on a TLS listener: a stalled handshake times out, deadline 0 times out at once", () =>
    withTcp(
      Effect.gen(function*() {
        const { certs, hello, listener } = yield* tlsListenerAndHello()
        const before = openFds()
        // Nothing queued and a deadline already past: TimedOut without waiting.
        const immediate = yield* failsWith(() => listener.accept({ deadline: 0 }), "TimedOut", "deadline 0")
        assert.strictEqual(immediate._tag, "TimedOut")
        // A client that sends half its ClientHello and stalls.
        const stalled = yield* Effect.forkChild(hostileClient(listener.port, "halfHello", hello))
        yield* failsWith(() => Effect.scoped(listener.accept({ timeout: "300 millis" })), "TimedOut", "stalled")
        // The accept that gave up dropped the stalled client and its slot.
        yield* Fiber.join(stalled)
        yield* expectPoolIdle
        assert.strictEqual(handshakesFailed(listener), 1)
        yield* fdsBackTo(before)
        // A real client is accepted afterwards, and talks.
        const real = Tls.connect({ port: listener.port, host: "127.0.0.1", servername: "localhost", ca: certs.ca.cert })
        real.on("error", () => {})
        yield* Effect.addFinalizer(() => Effect.sync(() => real.destroy()))
        const socket = yield* listener.accept(T)
        assert.isDefined(socket.tls)
        real.write("ping")
        assert.strictEqual(str(yield* socket.recv(4, T)), "ping")
      }),
      Tcp
    ))

  it.live("interrupting an accept mid-handshake releases the descriptor and the slot", () =>
    withTcp(
      Effect.gen(function*() {
        const { hello, listener } = yield* tlsListenerAndHello()
        const before = openFds()
        const accepting = yield* Effect.forkChild(Effect.scoped(listener.accept()))
        const client = yield* Effect.forkChild(hostileClient(listener.port, "halfHello", hello))
        // The plaintext accept took the client and a slot: the handshake is under way.
        const during = yield* statsWhen((s) => s.inUse === 1)
        assert.strictEqual(during.inUse, 1)
        assert.isUndefined(accepting.pollUnsafe())
        yield* Fiber.interrupt(accepting)
        // The client sees its connection dropped, and nothing is held.
        yield* Fiber.join(client)
        yield* expectPoolIdle
        yield* fdsBackTo(before)
      }),
      Tcp
    ))

  it.live("interrupting a TLS connect mid-handshake (a server that never answers) releases descriptor and slot", () =>
    withTcp(
      Effect.gen(function*() {
        let received = 0
        const peers: Array<Net.Socket> = []
        const server = yield* rawServer((socket) => {
          peers.push(socket)
          socket.on("error", () => {})
          socket.on("data", (chunk: Buffer) => {
            received += chunk.length
          })
        })
        const before = openFds()
        const connecting = yield* Effect.forkChild(TcpClient.connect(server.address, {
          tls: { serverName: "localhost" }
        }).pipe(Effect.scoped))
        // The ClientHello reached the server: the connect is in its handshake.
        yield* eventually(() => received > 0, "the server got the ClientHello")
        const inHandshake = yield* TcpStorage.stats
        assert.strictEqual(inHandshake.inUse, 1)
        yield* Fiber.interrupt(connecting)
        assert.isTrue(Exit.hasInterrupts(yield* awaitDone(connecting, "the connect ended")))
        const peer = peers[0]
        yield* eventually(() => peer?.readableEnded === true || peer?.destroyed === true, "the server saw the close")
        yield* expectPoolIdle
        peer?.destroy()
        yield* fdsBackTo(before)
      }),
      Tcp
    ))

  it.live("a flooding TLS peer: the slot bounds the client's memory, the peer is held back, every byte arrives", () =>
    withTcp(
      Effect.gen(function*() {
        const certs = yield* makeCertificates(openssl ?? "openssl")
        const TOTAL = 64 * 1024 * 1024
        const flood = Buffer.alloc(TOTAL)
        for (let i = 0; i < TOTAL; i++) flood[i] = i % 251
        // The peer writes 64 KiB at a time for as long as its socket takes them, then waits for 'drain'.
        let queued = 0
        let heldBack = 0
        let writer: Tls.TLSSocket | undefined
        const server = yield* rawTlsServer({ cert: certs.server.cert, key: certs.server.key }, (socket) => {
          writer = socket
          const pump = (): void => {
            while (queued < TOTAL) {
              const end = Math.min(queued + 64 * 1024, TOTAL)
              const more = socket.write(flood.subarray(queued, end))
              queued = end
              if (!more) {
                heldBack += 1
                socket.once("drain", pump)
                return
              }
            }
            socket.end()
          }
          pump()
        })
        /** What left the peer's process: written minus what its socket still buffers. */
        const pushed = () => queued - (writer?.writableLength ?? 0)
        const socket = yield* TcpClient.connect(server.address, {
          tls: { ca: certs.ca.cert, serverName: "localhost" },
          ...T
        })
        const conn = connectionOf(socket)
        assert.isDefined(conn)
        // The slot fills up: the client has buffered all it may.
        yield* eventually(() => (conn?.unread ?? 0) >= BUFFER, "the client's slot filled")
        yield* eventually(() => heldBack > 0, "the peer's write was held back")
        // Let the flood push for a while (bounded in polls): the client never holds more than its slot, and
        // the peer keeps most of the flood, held back by the client's full slot and the kernel's windows
        // (a few MiB here; a client that kept reading would take the whole quarter in a fraction of this).
        let most = 0
        const drained = yield* pollUntil(() => {
          most = Math.max(most, conn?.unread ?? 0)
          return pushed() > TOTAL / 4
        }, 100)
        assert.isAtMost(most, BUFFER, "the client buffered more than its slot")
        assert.isFalse(drained, `the peer pushed ${pushed()} bytes to a client reading nothing`)
        // Then read everything: every byte, in order.
        const chunk = new Uint8Array(256 * 1024)
        for (let offset = 0; offset < TOTAL; offset += chunk.length) {
          yield* socket.recvInto(chunk, T)
          for (let i = 0; i < chunk.length; i++) {
            if (chunk[i] !== (offset + i) % 251) {
              return assert.fail(`byte ${offset + i} is ${chunk[i]}, expected ${(offset + i) % 251}`)
            }
          }
          most = Math.max(most, conn?.unread ?? 0)
        }
        assert.isAtMost(most, BUFFER, "the client buffered more than its slot")
        assert.strictEqual((yield* Effect.flip(socket.recv(1, T)))._tag, "PeerClosed")
        yield* socket.close(T)
      }),
      Tcp
    ))
})
