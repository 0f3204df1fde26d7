/**
 * Interop: TcpClient.pool against a real `redis-server` on 127.0.0.1.
 * `CLIENT ID` names the server-side connection a use got, so reuse is seen
 * from the server's side, not only from the pool's counters.
 *
 * Skipped (with the reason printed) when `redis-server` is not on PATH.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TcpClient } from "../../src/index.ts"
import { connectionOf } from "../../src/internal/tcpSocket.ts"
import { checkFdLeaks, eventually, str } from "../helpers.ts"
import { call, command, findRedisServer, withRedis } from "./redis-server.ts"

const redisServer = findRedisServer("interop/redis-pool")

const T = { timeout: "5 seconds" } as const

describe("interop: redis-server through TcpClient.pool", () => {
  checkFdLeaks()

  it.live.skipIf(redisServer === undefined)("20 sequential uses on size 2 reuse the server's connections", () =>
    withRedis(redisServer, (address) =>
      Effect.gen(function*() {
        const pool = yield* TcpClient.pool(address, { size: 2 })
        const ids = new Set<string>()
        for (let i = 0; i < 20; i++) {
          const id = yield* Effect.scoped(Effect.flatMap(pool.get(T), (socket) => call(socket, "CLIENT", "ID")))
          assert.match(id, /^:\d+$/)
          ids.add(id)
        }
        assert.isAtLeast(ids.size, 1)
        assert.isAtMost(ids.size, 2, `server-side connections: ${[...ids].join(", ")}`)
        const stats = yield* pool.stats
        assert.strictEqual(stats.created, ids.size)
        assert.strictEqual(stats.reused, 20 - ids.size)
        assert.strictEqual(stats.discarded, 0)
      })
    ))

  it.live.skipIf(redisServer === undefined)("a use that leaves a reply unread is discarded", () =>
    withRedis(redisServer, (address) =>
      Effect.gen(function*() {
        const pool = yield* TcpClient.pool(address, { size: 1 })
        const first = yield* Effect.scoped(Effect.flatMap(pool.get(T), (socket) => call(socket, "CLIENT", "ID")))
        yield* Effect.scoped(Effect.gen(function*() {
          const socket = yield* pool.get(T)
          yield* socket.sendv([...command("PING"), ...command("PING")], T)
          assert.strictEqual(str(yield* socket.recvUntil("\r\n", T)), "+PONG")
          yield* eventually(() => (connectionOf(socket)?.unread ?? 0) > 0, "the second +PONG arrived")
        }))
        const second = yield* Effect.scoped(Effect.flatMap(pool.get(T), (socket) => call(socket, "CLIENT", "ID")))
        assert.notStrictEqual(second, first, "the unclean connection was lent again")
        const stats = yield* pool.stats
        assert.strictEqual(stats.discarded, 1)
        assert.strictEqual(stats.created, 2)
      })
    ))

  it.live.skipIf(redisServer === undefined)("after CLIENT KILL TYPE normal from another connection, the next get still works", () =>
    withRedis(redisServer, (address) =>
      Effect.gen(function*() {
        const pool = yield* TcpClient.pool(address, { size: 2 })
        const [idle, first] = yield* Effect.scoped(
          Effect.flatMap(pool.get(T), (socket) => Effect.map(call(socket, "CLIENT", "ID"), (id) => [socket, id] as const))
        )
        const killer = yield* TcpClient.connect(address, T)
        const killed = yield* call(killer, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert.match(killed, /^:[1-9]\d*$/)
        // A pool only knows what has reached it: wait for the kill's FIN (redis sends it before the reply
        // to `killer`, but the two sockets' events may be handled in either order).
        yield* eventually(() => connectionOf(idle)?.summary().peerFinished === true, "the kill reached the idle connection")
        const after = yield* Effect.scoped(Effect.flatMap(pool.get(T), (socket) => call(socket, "CLIENT", "ID")))
        assert.notStrictEqual(after, first)
        assert.strictEqual(yield* Effect.scoped(Effect.flatMap(pool.get(T), (socket) => call(socket, "PING"))), "+PONG")
        yield* killer.close(T)
      })
    ))
})
