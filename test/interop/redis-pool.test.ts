/**
 * Interop: TcpClient.pool against a real `redis-server` on 127.0.0.1.
 * `CLIENT ID` names the server-side connection a use got, so reuse is seen
 * from the server's side, not only from the pool's counters.
 *
 * Skipped (with the reason printed) when `redis-server` is not on PATH.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import { accessSync, constants } from "node:fs"
import * as Net from "node:net"
import { delimiter, join } from "node:path"
import { TcpClient } from "../../src/index.ts"
import type { TcpSocket } from "../../src/index.ts"
import { connectionOf } from "../../src/internal/tcpSocket.ts"
import { checkFdLeaks, closedPort, eventually, withTcp } from "../helpers.ts"

const redisServer: string | undefined = (process.env.PATH ?? "").split(delimiter).map((dir) =>
  join(dir, "redis-server")
).find((candidate) => {
  try {
    accessSync(candidate, constants.X_OK)
    return true
  } catch {
    return false
  }
})
if (redisServer === undefined) {
  console.log("[interop/redis-pool] skipping: redis-server is not on PATH (install it, e.g. apt-get install redis-server)")
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const T = { timeout: "5 seconds" } as const

/** One RESP command as an array of bulk strings. */
const command = (...args: ReadonlyArray<string>): Array<Uint8Array> => [
  encoder.encode(`*${args.length}\r\n`),
  ...args.map((arg) => encoder.encode(`$${encoder.encode(arg).length}\r\n${arg}\r\n`))
]

/** Sends one command and reads its one-line reply (`:1`, `+OK`, ...). */
const call = (socket: TcpSocket.TcpSocket, ...args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    yield* socket.sendv(command(...args), T)
    return decoder.decode(yield* socket.recvUntil("\r\n", { max: 1024, ...T }))
  })

/**
 * A redis-server on a free loopback port, without persistence, killed (and
 * waited for) with the scope. Ready once it accepts a connection.
 */
const startRedis = (binary: string): Effect.Effect<{ readonly port: number; readonly address: string }, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* closedPort
    const logs: Array<string> = []
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(binary, [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--protected-mode",
          "no",
          "--dir",
          "/tmp"
        ], { stdio: ["ignore", "pipe", "pipe"] })
        child.stdout.on("data", (d: Buffer) => logs.push(d.toString()))
        child.stderr.on("data", (d: Buffer) => logs.push(d.toString()))
        child.on("error", (e) => logs.push(`spawn error: ${e.message}`))
        return child
      }),
      (child) =>
        Effect.callback<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          const force = setTimeout(() => child.kill("SIGKILL"), 3000)
          child.once("close", () => {
            clearTimeout(force)
            resume(Effect.void)
          })
          child.kill("SIGTERM")
        })
    )
    // Ready when it accepts: polled, at most 200 tries 50 ms apart (bounded in count: a loaded
    // machine starting redis slowly only takes longer).
    for (let attempt = 0;; attempt++) {
      if (child.exitCode !== null) return yield* Effect.fail(new Error(`redis-server exited: ${logs.join("")}`))
      const accepted = yield* Effect.callback<boolean>((resume) => {
        const probe = Net.connect({ port, host: "127.0.0.1" })
        probe.once("connect", () => {
          probe.destroy()
          resume(Effect.succeed(true))
        })
        probe.once("error", () => {
          probe.destroy()
          resume(Effect.succeed(false))
        })
      })
      if (accepted) break
      if (attempt >= 200) return yield* Effect.fail(new Error(`redis-server not accepting on ${port}: ${logs.join("")}`))
      yield* Effect.sleep("50 millis")
    }
    return { port, address: `127.0.0.1:${port}` }
  })

const withRedis = <A, E>(body: (address: string) => Effect.Effect<A, E, TcpClient.TcpClient | Scope.Scope>) =>
  withTcp(Effect.gen(function*() {
    const binary = redisServer
    if (binary === undefined) return assert.fail("redis-server missing")
    const redis = yield* startRedis(binary)
    return yield* body(redis.address)
  })).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(40),
      orElse: () => Effect.fail(new Error("redis test did not finish within 40 s"))
    })
  )

describe("interop: redis-server through TcpClient.pool", () => {
  checkFdLeaks()

  it.live.skipIf(redisServer === undefined)("20 sequential uses on size 2 reuse the server's connections", () =>
    withRedis((address) =>
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
    withRedis((address) =>
      Effect.gen(function*() {
        const pool = yield* TcpClient.pool(address, { size: 1 })
        const first = yield* Effect.scoped(Effect.flatMap(pool.get(T), (socket) => call(socket, "CLIENT", "ID")))
        yield* Effect.scoped(Effect.gen(function*() {
          const socket = yield* pool.get(T)
          yield* socket.sendv([...command("PING"), ...command("PING")], T)
          assert.strictEqual(decoder.decode(yield* socket.recvUntil("\r\n", T)), "+PONG")
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
    withRedis((address) =>
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
