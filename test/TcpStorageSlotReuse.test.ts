/**
 * libdill's `tcp_connect_mem` pattern: one caller-supplied slot, a socket
 * after another. A slot whose previous socket is finishing its graceful
 * close in the background is not in use: the next connect waits for that
 * close within its own deadline, then reuses the slot. Only a slot held by
 * a socket that is still open is `InvalidArgument`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import type * as Net from "node:net"
import { TcpClient, TcpStorage, TcpTest } from "../src/index.ts"
import { checkFdLeaks, echoServer, failsWith, rawServer, roundTrip, withTcp } from "./helpers.ts"

checkFdLeaks()

const T = { timeout: "5 seconds" } as const

describe("a caller-supplied slot", () => {
  it.live("serves 10 back-to-back connects whose scopes end without close", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoServer()
      const slot = yield* TcpStorage.acquire()
      for (let i = 0; i < 10; i++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const socket = yield* TcpClient.connect(server.address, { ...T, storage: slot })
          yield* roundTrip(socket, `request ${i}`)
        }))
      }
      assert.strictEqual(server.peers.length, 10)
    })))

  it.live("waits for a peer that never finishes, until that close gives up at closeTimeout", () =>
    withTcp(Effect.gen(function*() {
      // The peer reads and never sends its FIN: the background close ends at closeTimeout.
      const peers: Array<Net.Socket> = []
      const server = yield* rawServer((socket) => {
        peers.push(socket)
        socket.on("error", () => {})
        socket.resume()
      })
      const slot = yield* TcpStorage.acquire()
      const closeTimeout = "300 millis"
      yield* Effect.scoped(TcpClient.connect(server.address, { ...T, storage: slot, closeTimeout }))
      const started = Date.now()
      yield* Effect.scoped(TcpClient.connect(server.address, { ...T, storage: slot, closeTimeout }))
      // It could only go on once the first socket's close gave up.
      assert.isAtLeast(Date.now() - started, 250)
      assert.strictEqual(peers.length, 2)
    })))

  it.live("deadline 0 (or one that passes first) while the previous socket closes is TimedOut, not InvalidArgument", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* rawServer((socket) => {
        socket.on("error", () => {})
        socket.resume()
      })
      const slot = yield* TcpStorage.acquire()
      const closeTimeout = "2 seconds"
      yield* Effect.scoped(TcpClient.connect(server.address, { ...T, storage: slot, closeTimeout }))
      yield* failsWith(
        () => Effect.scoped(TcpClient.connect(server.address, { deadline: 0, storage: slot })),
        "TimedOut",
        "deadline 0"
      )
      yield* failsWith(
        () => Effect.scoped(TcpClient.connect(server.address, { timeout: "50 millis", storage: slot })),
        "TimedOut",
        "a timeout shorter than the close"
      )
    })))

  it.live("a slot held by an open socket is InvalidArgument at once", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoServer()
      const slot = yield* TcpStorage.acquire()
      const socket = yield* TcpClient.connect(server.address, { ...T, storage: slot })
      yield* failsWith(
        () => Effect.scoped(TcpClient.connect(server.address, { ...T, storage: slot })),
        "InvalidArgument",
        "second socket on an open slot"
      )
      yield* failsWith(
        () => Effect.scoped(TcpClient.connect(server.address, { deadline: -1, storage: slot })),
        "InvalidArgument",
        "no deadline: still at once"
      )
      yield* roundTrip(socket, "still fine")
    })))

  it.live("two connects waiting on one closing slot: the first takes it, the second is InvalidArgument", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoServer()
      const slot = yield* TcpStorage.acquire()
      yield* Effect.scoped(TcpClient.connect(server.address, { ...T, storage: slot }))
      const results = yield* Effect.all(
        [0, 1].map(() =>
          Effect.result(Effect.scoped(Effect.flatMap(
            TcpClient.connect(server.address, { ...T, storage: slot }),
            (socket) => roundTrip(socket, "x")
          )))
        ),
        { concurrency: "unbounded" }
      )
      const tags = results.map((r) => r._tag === "Success" ? "ok" : r.failure._tag)
      // The second finds the first's socket open (InvalidArgument), or closing in its turn (then it waits: ok).
      assert.include(tags, "ok")
      for (const tag of tags) assert.include(["ok", "InvalidArgument"], tag)
    })))
})

describe("a caller-supplied slot in memory (TcpTest.layer)", () => {
  it.effect("waits for the previous socket's background close, as on Node", () =>
    Effect.gen(function*() {
      const server = yield* TcpTest.listen("127.0.0.1:7000")
      const slot = yield* TcpStorage.acquire()
      let previous: TcpTest.Peer | undefined
      for (let i = 0; i < 3; i++) {
        const connecting = yield* Effect.forkChild(
          Effect.scoped(Effect.flatMap(
            TcpClient.connect("127.0.0.1:7000", { storage: slot }),
            (socket) => socket.send(new TextEncoder().encode(`request ${i}`))
          ))
        )
        // The previous socket is still closing (its peer has not finished): only now may it end.
        if (previous !== undefined) {
          // Let the connect run until it waits: it must not have failed on the closing slot.
          for (let turn = 0; turn < 5; turn++) yield* Effect.yieldNow
          assert.isUndefined(connecting.pollUnsafe(), `connect ${i} ended while the previous socket was closing`)
          yield* previous.end
        }
        const peer = yield* server.accept()
        const request = yield* peer.recvAll()
        assert.strictEqual(new TextDecoder().decode(request), `request ${i}`)
        yield* Fiber.join(connecting)
        previous = peer
      }
      if (previous !== undefined) yield* previous.end
      // An open socket on the slot is still InvalidArgument at once.
      const connecting = yield* Effect.forkChild(TcpClient.connect("127.0.0.1:7000", { storage: slot }))
      yield* server.accept()
      yield* Fiber.join(connecting)
      yield* failsWith(() => TcpClient.connect("127.0.0.1:7000", { storage: slot }), "InvalidArgument", "open slot")
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))
})
