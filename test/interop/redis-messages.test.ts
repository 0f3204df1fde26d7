/**
 * Interop: RESP spoken with a real `redis-server` through
 * `TcpMessage.crlf`: every reply line is a message, and a bulk string's
 * body is an exact `recv` on the socket beneath, so messages and exact
 * reads take turns on the same buffered bytes.
 *
 * Skipped (with the reason printed) when `redis-server` is not on PATH.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { TcpClient, TcpMessage } from "../../src/index.ts"
import type { TcpError } from "../../src/index.ts"
import { checkFdLeaks, sha256, str, text } from "../helpers.ts"
import { command as commandChunks, findRedisServer, withRedis } from "./redis-server.ts"

const redisServer = findRedisServer("interop/redis-messages")

const T = { timeout: "5 seconds" } as const
const LONG = { timeout: "20 seconds" } as const

/** One RESP command (an array of bulk strings) in a single buffer. */
const command = (...args: ReadonlyArray<string | Uint8Array>): Uint8Array => Buffer.concat(commandChunks(...args))

/** A bulk string reply: its `$n` line as a message, then its body and CRLF with one exact receive. */
const readBulk = (
  lines: TcpMessage.MessageSocket
): Effect.Effect<Uint8Array | null, TcpError.RecvUntilError> =>
  Effect.gen(function*() {
    const header = str(yield* lines.recv(T))
    assert.match(header, /^\$(-1|\d+)$/, `a bulk string header: ${header}`)
    const length = Number(header.slice(1))
    if (length < 0) return null
    const body = yield* lines.socket.recv(length + 2, LONG)
    assert.strictEqual(str(body.subarray(length)), "\r\n", "the bulk body ends in CRLF")
    return body.subarray(0, length)
  })

describe("interop: redis-server through TcpMessage.crlf", () => {
  checkFdLeaks()

  it.live.skipIf(redisServer === undefined)("SET and GET of a 100 KiB value: reply lines as messages, the body exactly", () =>
    withRedis(redisServer, (address) =>
      Effect.gen(function*() {
        const socket = yield* TcpClient.connect(address, T)
        const lines = yield* TcpMessage.crlf(socket, { max: 1024 })
        const value = randomBytes(100 * 1024)

        yield* lines.socket.send(command("SET", "effect-tcp:blob", value), LONG)
        assert.strictEqual(str(yield* lines.recv(T)), "+OK")

        // GET, a missing key and a PING in one write: the body, the null bulk and
        // +PONG come back to back, so each read starts where the one before stopped.
        yield* lines.socket.sendv([
          command("GET", "effect-tcp:blob"),
          command("GET", "effect-tcp:none"),
          command("PING")
        ], T)
        const got = yield* readBulk(lines)
        if (got === null) return assert.fail("GET returned the null bulk string")
        assert.strictEqual(got.length, value.length)
        assert.strictEqual(sha256(got), sha256(value), "GET returned different bytes")
        assert.isNull(yield* readBulk(lines))
        assert.strictEqual(str(yield* lines.recv(T)), "+PONG")

        // A bulk string holding CRLFs is still read whole: exact reads do not look for delimiters.
        const crlfs = text("a\r\nb\r\n\r\n")
        yield* lines.socket.sendv([command("SET", "effect-tcp:crlf", crlfs), command("GET", "effect-tcp:crlf")], T)
        assert.strictEqual(str(yield* lines.recv(T)), "+OK")
        const back = yield* readBulk(lines)
        assert.deepStrictEqual(back, crlfs)

        // Nothing is left over: a receive with deadline 0 finds no message.
        const none = yield* Effect.flip(lines.recv({ deadline: 0 }))
        assert.strictEqual(none._tag, "TimedOut")
        yield* socket.close(T)
      })
    ))

  it.live.skipIf(redisServer === undefined)("10,000 INCRs in one sendv: 10,000 reply messages, :1 to :10000", () =>
    withRedis(redisServer, (address) =>
      Effect.gen(function*() {
        const socket = yield* TcpClient.connect(address, T)
        const lines = yield* TcpMessage.crlf(socket, { max: 64 })
        const count = 10_000
        const incr = command("INCR", "effect-tcp:counter")
        yield* lines.socket.sendv(Array.from({ length: count }, () => incr), LONG)
        for (let i = 1; i <= count; i++) {
          const reply = str(yield* lines.recv(T))
          if (reply !== `:${i}`) return assert.fail(`reply #${i}: ${reply}`)
        }
        const none = yield* Effect.flip(lines.recv({ deadline: 0 }))
        assert.strictEqual(none._tag, "TimedOut", "more replies than commands")

        yield* lines.socket.send(command("GET", "effect-tcp:counter"), T)
        const counter = yield* readBulk(lines)
        assert.strictEqual(counter === null ? null : str(counter), String(count))
        yield* socket.close(T)
      })
    ))
})
