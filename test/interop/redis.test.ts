/**
 * Interop with a server nobody here wrote: a real `redis-server` on
 * 127.0.0.1, driven through effect-tcp with `send`/`sendv` and exact
 * `recv`s of RESP replies.
 *
 * Skipped (with the reason printed) when `redis-server` is not on PATH; the
 * test never installs anything (.ci/run does).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { TcpClient, TcpNode } from "../../src/index.ts"
import type { TcpError, TcpSocket } from "../../src/index.ts"
import { checkFdLeaks, expectPoolIdle, sha256, str, text } from "../helpers.ts"
import { command, findRedisServer, startRedis, withRedis } from "./redis-server.ts"

/** `redis-server` on PATH, or undefined (then every test here is skipped). */
const redisServer = findRedisServer("interop/redis")

const T = { timeout: "5 seconds" } as const

/** Reads one CRLF-terminated line with exact 1-byte receives (at most 128 bytes). */
const readLine = (socket: TcpSocket.TcpSocket): Effect.Effect<string, TcpError.RecvError> =>
  Effect.gen(function*() {
    const line: Array<number> = []
    while (line.length < 128) {
      const [b] = yield* socket.recv(1, T)
      if (b === undefined) continue
      line.push(b)
      if (line.length >= 2 && line[line.length - 2] === 13 && b === 10) return str(new Uint8Array(line.slice(0, -2)))
    }
    return assert.fail(`RESP line longer than 128 bytes: ${str(new Uint8Array(line))}`)
  })

describe("interop: redis-server", () => {
  checkFdLeaks()

  it.live.skipIf(redisServer === undefined)("PING → +PONG with an exact recv(7)", () =>
    withRedis(redisServer, (address) =>
      Effect.gen(function*() {
        const socket = yield* TcpClient.connect(address, T)
        // inline command
        yield* socket.send(text("PING\r\n"), T)
        assert.strictEqual(str(yield* socket.recv(7, T)), "+PONG\r\n")
        // RESP array, twice in one write
        yield* socket.sendv([...command("PING"), ...command("ECHO", "hi")], T)
        assert.strictEqual(str(yield* socket.recv(7, T)), "+PONG\r\n")
        assert.strictEqual(str(yield* socket.recv(8, T)), "$2\r\nhi\r\n")
        // an error reply, read line by line
        yield* socket.sendv(command("NOSUCHCOMMAND"), T)
        const error = yield* readLine(socket)
        assert.match(error, /^-ERR unknown command/)
        // QUIT: +OK, then redis closes and recv sees the FIN as PeerClosed
        yield* socket.sendv(command("QUIT"), T)
        assert.strictEqual(str(yield* socket.recv(5, T)), "+OK\r\n")
        const eof = yield* Effect.flip(socket.recv(1, T))
        assert.strictEqual(eof._tag, "PeerClosed")
        yield* socket.close(T)
      })
    ))

  it.live.skipIf(redisServer === undefined)("SET a 1 MiB value, GET it back exactly", () =>
    withRedis(redisServer, (address) =>
      Effect.gen(function*() {
        const socket = yield* TcpClient.connect(address, T)
        const value = randomBytes(1024 * 1024)
        yield* socket.sendv(command("SET", "effect-tcp:blob", value), { timeout: "20 seconds" })
        assert.strictEqual(str(yield* socket.recv(5, T)), "+OK\r\n")

        yield* socket.sendv(command("GET", "effect-tcp:blob"), T)
        const header = yield* readLine(socket)
        assert.strictEqual(header, `$${value.length}`)
        const length = Number(header.slice(1))
        const body = yield* socket.recv(length + 2, { timeout: "20 seconds" })
        assert.strictEqual(str(body.subarray(length)), "\r\n")
        const got = body.subarray(0, length)
        assert.strictEqual(got.length, value.length)
        assert.strictEqual(sha256(got), sha256(value))
        assert.isTrue(Buffer.from(got).equals(value), "GET returned different bytes")

        // STRLEN agrees, and a missing key is the null bulk string
        yield* socket.sendv([...command("STRLEN", "effect-tcp:blob"), ...command("GET", "effect-tcp:none")], T)
        assert.strictEqual(yield* readLine(socket), `:${value.length}`)
        assert.strictEqual(str(yield* socket.recv(5, T)), "$-1\r\n")
        yield* socket.close(T)
      })
    ))

  it.live.skipIf(redisServer === undefined)("100 pipelined INCRs in one sendv, 100 replies read exactly", () =>
    withRedis(redisServer, (address) =>
      Effect.gen(function*() {
        const socket = yield* TcpClient.connect(address, T)
        const batch: Array<Uint8Array> = []
        for (let i = 0; i < 100; i++) batch.push(...command("INCR", "effect-tcp:counter"))
        yield* socket.sendv(batch, T)
        for (let i = 1; i <= 100; i++) {
          const expected = `:${i}\r\n`
          assert.strictEqual(str(yield* socket.recv(expected.length, T)), expected, `reply #${i}`)
        }
        // nothing more was sent: a receive with deadline 0 finds no byte
        const none = yield* Effect.flip(socket.recv(1, { deadline: 0 }))
        assert.strictEqual(none._tag, "TimedOut")
        yield* socket.sendv(command("GET", "effect-tcp:counter"), T)
        assert.strictEqual(str(yield* socket.recv(9, T)), "$3\r\n100\r\n")
        yield* socket.close(T)
      })
    ))

  it.live.skipIf(redisServer === undefined)("a program written from the README/DESIGN alone: connect, PING, recv(7), close", () =>
    Effect.gen(function*() {
      const binary = redisServer
      if (binary === undefined) return assert.fail("redis-server missing")
      const redis = yield* startRedis(binary)

      // --- the program, as a user would write it from README.md's tour ---
      const ping = (address: string) =>
        Effect.gen(function*() {
          const socket = yield* TcpClient.connect(address, { timeout: "2 seconds" })
          yield* socket.send(new TextEncoder().encode("PING\r\n"))
          const reply = yield* socket.recv(7, { timeout: "2 seconds" })
          yield* socket.close()
          return new TextDecoder().decode(reply)
        }).pipe(Effect.scoped)
      // ---

      assert.strictEqual(yield* ping(redis.address), "+PONG\r\n")
      yield* expectPoolIdle
    }).pipe(Effect.provide(TcpNode.layer)))
})
