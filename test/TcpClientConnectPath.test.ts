/**
 * The connect path's shortcuts (issue #14) keep its behaviour: a string
 * address parsed once and reused, an IP literal that skips the resolver,
 * one address without TLS connecting in one step with a slot taken at once.
 * Each check here holds on the code before the shortcuts too: they guard
 * against the shortcuts changing what a connect does.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { NetAddress } from "effect/net"
import { TcpClient, TcpNode, TcpStorage } from "../src/index.ts"
import {
  checkFdLeaks,
  closedPort,
  echoServer,
  expectPoolIdle,
  expectWaiting,
  failsWith,
  fullBacklog,
  roundTrip,
  withTcp
} from "./helpers.ts"

checkFdLeaks()

describe("TcpClient.connect path", () => {
  it.live("the same address string, connected again and again, still has its family checked each time", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoServer()
      for (let i = 0; i < 3; i++) {
        yield* Effect.scoped(Effect.flatMap(TcpClient.connect(server.address), (socket) => roundTrip(socket, `hi ${i}`)))
        const error = yield* failsWith(() => TcpClient.connect(server.address, { family: "ipv6" }), "AddrNotAvail")
        assert.include(error.message, "not an IPv6 address")
        assert.strictEqual(error.address, server.address)
        yield* Effect.scoped(Effect.flatMap(
          TcpClient.connect(server.address, { family: "ipv4", timeout: "5 seconds" }),
          (socket) => roundTrip(socket, `v4 ${i}`)
        ))
      }
    })))

  it.live("a string, a { host, port } object and an InetAddress reach the same peer, named the same way", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoServer()
      const forms = [
        server.address,
        { host: "127.0.0.1", port: server.port },
        NetAddress.inetAddressFromIpStringUnsafe("127.0.0.1", server.port)
      ]
      for (const address of forms) {
        yield* Effect.scoped(Effect.gen(function*() {
          const socket = yield* TcpClient.connect(address)
          yield* roundTrip(socket, "form")
          assert.deepStrictEqual(socket.remoteAddress, NetAddress.inetAddressFromIpStringUnsafe("127.0.0.1", server.port))
        }))
      }
    })))

  it.live("a bad address string fails the same way every time (failures are not remembered)", () =>
    withTcp(Effect.gen(function*() {
      for (let i = 0; i < 3; i++) {
        const error = yield* failsWith(() => TcpClient.connect("127.0.0.1:0"), "InvalidArgument")
        assert.strictEqual(error.syscall, "connect")
        assert.include(error.message, "port must be an integer from 1 through 65535")
      }
    })))

  it.live("a refused connect gives its slot back, every time", () =>
    withTcp(Effect.gen(function*() {
      const port = yield* closedPort
      for (let i = 0; i < 5; i++) {
        const error = yield* failsWith(() => TcpClient.connect(`127.0.0.1:${port}`), "ConnRefused")
        assert.strictEqual(error.address, `127.0.0.1:${port}`)
        yield* expectPoolIdle
      }
    })))

  it.live("a connect timed out or interrupted during its handshake gives its slot back", () =>
    withTcp(Effect.gen(function*() {
      const backlog = yield* fullBacklog
      yield* failsWith(() => TcpClient.connect(backlog.address, { timeout: "50 millis" }), "TimedOut")
      yield* expectPoolIdle
      const fiber = yield* Effect.forkChild(Effect.scoped(TcpClient.connect(backlog.address)))
      yield* expectWaiting(fiber, "connect to a full backlog")
      yield* Fiber.interrupt(fiber)
      yield* expectPoolIdle
    })))

  it.live("with every slot taken, a connect waits for one (or fails OutOfMemory when told not to wait)", () =>
    Effect.gen(function*() {
      const server = yield* echoServer()
      yield* withTcp(
        Effect.gen(function*() {
          const first = yield* TcpClient.connect(server.address)
          const waiting = yield* Effect.forkChild(Effect.scoped(
            Effect.flatMap(TcpClient.connect(server.address, { timeout: "10 seconds" }), (s) => roundTrip(s, "second"))
          ))
          yield* expectWaiting(waiting, "connect waiting for the only slot")
          yield* first.close()
          yield* Fiber.join(waiting)
        }),
        TcpNode.layerWith({ slots: 1, bufferSize: 16 * 1024 }).pipe(Layer.orDie)
      )
      yield* withTcp(
        Effect.gen(function*() {
          yield* TcpClient.connect(server.address)
          const error = yield* failsWith(() => TcpClient.connect(server.address), "OutOfMemory")
          assert.include(error.message, "storage pool exhausted")
        }),
        TcpNode.layerWith({ slots: 1, bufferSize: 16 * 1024, onExhausted: "fail" }).pipe(Layer.orDie)
      )
    }).pipe(Effect.scoped))

  it.live("a connect into the caller's own slot takes that slot, not one from the pool", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoServer()
      const slot = yield* TcpStorage.acquire()
      const socket = yield* TcpClient.connect(server.address, { storage: slot })
      yield* roundTrip(socket, "own slot")
      const stats = yield* TcpStorage.stats
      assert.strictEqual(stats.inUse, 1, `only the acquired slot is in use: ${JSON.stringify(stats)}`)
    })))
})
