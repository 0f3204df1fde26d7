/**
 * TcpClient.pool: connections to one peer kept open between uses. Against
 * the library's own listener (`TcpListener.serve` echoing 4-byte messages),
 * on loopback and in memory (`TcpTest.layer`, `TestClock` for idle timeouts).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import type { Scope } from "effect"
import { TestClock } from "effect/testing"
import { TcpClient, TcpListener, TcpStorage, TcpTest } from "../src/index.ts"
import { connectionOf } from "../src/internal/tcpSocket.ts"
import {
  awaitDone,
  checkFdLeaks,
  closedPort,
  echo4,
  eventually,
  expectPoolIdle,
  expectWaiting,
  failsWith,
  roundTrip,
  withTcp
} from "./helpers.ts"

/** An echo server of 4-byte messages; `accepted()` counts the connections it served. */
const echoListener = Effect.gen(function*() {
  const listener = yield* TcpListener.listen("127.0.0.1:0")
  let accepted = 0
  yield* Effect.forkScoped(TcpListener.serve(listener, (socket) => {
    accepted++
    return echo4(socket)
  }))
  return { address: `127.0.0.1:${listener.port}`, accepted: () => accepted }
})

/** One use of the pool: a 4-byte round trip on the connection it lends. */
const use = (pool: TcpClient.ConnectionPool, text = "ping") =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* pool.get({ timeout: "5 seconds" })
    yield* roundTrip(socket, text)
    return socket
  }))

const statsAre = (pool: TcpClient.ConnectionPool, expected: Partial<TcpClient.PoolStats>) =>
  Effect.map(pool.stats, (stats) => {
    for (const [key, value] of Object.entries(expected)) {
      assert.strictEqual(stats[key as keyof TcpClient.PoolStats], value, `${key} in ${JSON.stringify(stats)}`)
    }
  })

/** Holds a connection from `pool` until `release` completes. */
const hold = (pool: TcpClient.ConnectionPool, release: Deferred.Deferred<void>) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* pool.get()
    yield* Deferred.await(release)
    return socket
  }))

describe("TcpClient.pool", () => {
  checkFdLeaks()

  it.live("sequential uses share one connection: the server sees one", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoListener
      const pool = yield* TcpClient.pool(server.address, { size: 2 })
      const first = yield* use(pool, "one!")
      for (let i = 0; i < 9; i++) assert.strictEqual(yield* use(pool, `m${i}!!`.slice(0, 4)), first)
      yield* statsAre(pool, { created: 1, reused: 9, discarded: 0, open: 1, idle: 1, inUse: 0, waiting: 0 })
      assert.strictEqual(server.accepted(), 1)
    })))

  it.live("a use that leaves bytes unread gives its connection up", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoListener
      const pool = yield* TcpClient.pool(server.address, { size: 1 })
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const socket = yield* pool.get()
        yield* socket.send(new TextEncoder().encode("abcd"))
        yield* socket.recv(2, { timeout: "5 seconds" })
        yield* eventually(() => (connectionOf(socket)?.unread ?? 0) === 2, "the rest of the echo arrived")
        return socket
      }))
      yield* statsAre(pool, { discarded: 1, open: 0 })
      const second = yield* use(pool)
      assert.notStrictEqual(second, first)
      yield* statsAre(pool, { created: 2, reused: 0, discarded: 1 })
      assert.strictEqual(server.accepted(), 2)
    })))

  it.live("a use that fails gives its connection up; so does a half-closed one", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoListener
      const pool = yield* TcpClient.pool(server.address, { size: 1 })
      const failed = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
        const socket = yield* pool.get()
        yield* roundTrip(socket, "ping")
        return yield* Effect.fail("the request failed")
      })))
      assert.isTrue(Exit.isFailure(failed))
      yield* statsAre(pool, { created: 1, discarded: 1, open: 0 })
      yield* Effect.scoped(Effect.gen(function*() {
        const socket = yield* pool.get()
        yield* roundTrip(socket, "ping")
        yield* socket.done()
      }))
      yield* statsAre(pool, { created: 2, discarded: 2, open: 0 })
      yield* use(pool)
      yield* statsAre(pool, { created: 3, reused: 0, discarded: 2, open: 1 })
    })))

  it.live("at most `size` connections at once; the others wait and are counted", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoListener
      const pool = yield* TcpClient.pool(server.address, { size: 2 })
      const release = yield* Deferred.make<void>()
      const a = yield* Effect.forkChild(hold(pool, release))
      const b = yield* Effect.forkChild(hold(pool, release))
      yield* eventually(Effect.map(pool.stats, (s) => s.inUse === 2), "two connections lent")
      const c = yield* Effect.forkChild(use(pool))
      yield* expectWaiting(c, "a third get on a pool of 2")
      yield* statsAre(pool, { waiting: 1, inUse: 2, open: 2 })
      yield* Deferred.succeed(release, undefined)
      const [sa, sb] = [yield* Fiber.join(a), yield* Fiber.join(b)]
      const sc = yield* Fiber.join(c)
      assert.include([sa, sb], sc)
      yield* statsAre(pool, { created: 2, reused: 1, waiting: 0, inUse: 0, idle: 2 })
      assert.strictEqual(server.accepted(), 2)
    })))

  it.live("deadlines: 0 and past ones never wait, -1 waits until interrupted, a timeout is TimedOut", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoListener
      const pool = yield* TcpClient.pool(server.address, { size: 1 })
      yield* use(pool)
      // An idle connection is lent even with deadline 0.
      yield* Effect.scoped(pool.get({ deadline: 0 }))
      yield* statsAre(pool, { created: 1, reused: 1 })
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.forkChild(hold(pool, release))
      yield* eventually(Effect.map(pool.stats, (s) => s.inUse === 1), "the connection lent")
      yield* failsWith(() => Effect.scoped(pool.get({ deadline: 0 })), "TimedOut", "deadline 0")
      yield* failsWith(() => Effect.scoped(pool.get({ deadline: 1 })), "TimedOut", "a past deadline")
      yield* failsWith(() => Effect.scoped(pool.get({ timeout: "20 millis" })), "TimedOut", "a timeout")
      yield* failsWith(() => Effect.scoped(pool.get({ deadline: -2 })), "InvalidArgument", "deadline -2")
      const waiting = yield* Effect.forkChild(Effect.scoped(pool.get({ deadline: -1 })))
      yield* expectWaiting(waiting, "get with deadline -1 on a full pool")
      yield* statsAre(pool, { waiting: 1 })
      yield* Fiber.interrupt(waiting)
      yield* statsAre(pool, { waiting: 0, inUse: 1 })
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      yield* use(pool)
      yield* statsAre(pool, { created: 1, discarded: 0, waiting: 0, inUse: 0, idle: 1 })
    })))

  it.live("an idle connection the server closed is never handed out", () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const closeFirst = yield* Deferred.make<void>()
      let accepted = 0
      yield* Effect.forkScoped(TcpListener.serve(listener, (socket) =>
        Effect.gen(function*() {
          accepted++
          const bytes = yield* socket.recv(4, { timeout: "5 seconds" })
          yield* socket.send(bytes)
          if (accepted === 1) return yield* Deferred.await(closeFirst)
          return yield* echo4(socket)
        })))
      const pool = yield* TcpClient.pool(`127.0.0.1:${listener.port}`, { size: 1 })
      const first = yield* use(pool)
      yield* statsAre(pool, { idle: 1 })
      yield* Deferred.succeed(closeFirst, undefined)
      yield* eventually(() => connectionOf(first)?.summary().peerFinished === true, "the server's FIN reached the idle connection")
      const second = yield* use(pool)
      assert.notStrictEqual(second, first)
      yield* statsAre(pool, { created: 2, reused: 0, discarded: 1, open: 1 })
    })))

  it.effect("in memory: idle connections close after idleTimeout (TestClock), and the pool still lends", () =>
    Effect.gen(function*() {
      const server = yield* echoListener
      const pool = yield* TcpClient.pool(server.address, { size: 2, idleTimeout: "10 seconds" })
      yield* use(pool)
      yield* use(pool)
      yield* statsAre(pool, { created: 1, reused: 1, open: 1 })
      yield* TestClock.adjust("5 seconds")
      yield* statsAre(pool, { open: 1 })
      yield* TestClock.adjust("20 seconds")
      yield* eventually(Effect.map(pool.stats, (s) => s.open === 0), "the idle connection closed")
      yield* eventually(Effect.map(TcpStorage.stats, (s) => s.inUse === 0), "its slot came back")
      yield* use(pool)
      yield* statsAre(pool, { created: 2, open: 1 })
      assert.strictEqual(server.accepted(), 2)
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))

  it.live("the pool's scope closes every connection and gives every slot back", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoListener
      const release = yield* Deferred.make<void>()
      yield* Effect.scoped(Effect.gen(function*() {
        const pool = yield* TcpClient.pool(server.address, { size: 3 })
        const holders = yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(hold(pool, release)))
        yield* eventually(Effect.map(pool.stats, (s) => s.inUse === 3), "three connections lent")
        yield* Deferred.succeed(release, undefined)
        yield* Effect.forEach(holders, (fiber) => awaitDone(fiber, "a holder"))
        yield* statsAre(pool, { open: 3, idle: 3 })
        const storage = yield* TcpStorage.stats
        assert.isAtLeast(storage.inUse, 3, "the idle connections keep their slots")
      }))
      yield* expectPoolIdle
    })))

  it.live("a connect that fails is the get's error and takes no place in the pool", () =>
    withTcp(Effect.gen(function*() {
      const port = yield* closedPort
      const pool = yield* TcpClient.pool(`127.0.0.1:${port}`, { size: 1 })
      for (let i = 0; i < 3; i++) {
        yield* failsWith(() => Effect.scoped(pool.get({ timeout: "5 seconds" })), "ConnRefused", `attempt ${i}`)
      }
      yield* statsAre(pool, { open: 0, inUse: 0, waiting: 0, created: 0, discarded: 0 })
    })))

  it.effect("bad options: opening the pool cannot fail (DESIGN: never), every get fails with InvalidArgument", () =>
    Effect.gen(function*() {
      const bad = [
        ...[0, -1, 1.5, Number.NaN].map((size) => [`size ${size}`, { size }] as const),
        ["idleTimeout -1", { size: 1, idleTimeout: -1 }] as const
      ]
      for (const [label, options] of bad) {
        const pool = yield* TcpClient.pool("127.0.0.1:1", options)
        yield* failsWith(() => Effect.scoped(pool.get()), "InvalidArgument", label)
        assert.strictEqual((yield* pool.stats).created, 0, label)
      }
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))

  it.live("the README's snippet runs", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoListener
      const stats = yield* readmeSnippet(server.address)
      assert.strictEqual(stats.created, 1)
      assert.strictEqual(stats.reused, 2)
    })))
})

// The README's "Connection reuse" snippet, verbatim apart from the address and its `Effect.scoped` (withTcp scopes it).
const readmeSnippet = (address: string): Effect.Effect<
  TcpClient.PoolStats,
  unknown,
  TcpClient.TcpClient | Scope.Scope
> =>
  Effect.gen(function*() {
    const pool = yield* TcpClient.pool(address, { size: 4, idleTimeout: "30 seconds" })
    const request = (body: string) =>
      Effect.scoped(Effect.gen(function*() {
        const socket = yield* pool.get({ timeout: "2 seconds" })
        yield* socket.send(new TextEncoder().encode(body))
        return yield* socket.recv(body.length, { timeout: "2 seconds" })
      }))
    yield* request("ping")
    yield* request("pong")
    yield* request("done")
    return yield* pool.stats // { created: 1, reused: 2, ... }
  })
