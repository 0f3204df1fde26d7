/**
 * Interop: memcached's text protocol with a real `memcached` on 127.0.0.1.
 * A `VALUE` line is read with `recvUntil("\r\n")`, its body with one exact
 * `recv`, then the `END` line: lines and exact reads on the same socket.
 *
 * Skipped (with the reason printed) when `memcached` is not on PATH; the test
 * never installs anything (.ci/run does).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import { randomBytes } from "node:crypto"
import { TcpClient } from "../../src/index.ts"
import type { TcpError, TcpSocket } from "../../src/index.ts"
import { checkFdLeaks, sha256, str, text } from "../helpers.ts"
import { findMemcached, startMemcached } from "./memcached-server.ts"
import { withServer } from "./server-process.ts"

const memcached = findMemcached("interop/memcached")

const T = { timeout: "5 seconds" } as const
const LONG = { timeout: "20 seconds" } as const

/** One reply line, without its CRLF. */
const line = (socket: TcpSocket.TcpSocket): Effect.Effect<string, TcpError.RecvUntilError> =>
  Effect.map(socket.recvUntil("\r\n", { max: 1024, ...T }), str)

/** `get key`: the value's bytes, or null when memcached has none. */
const get = (socket: TcpSocket.TcpSocket, key: string) =>
  Effect.gen(function*() {
    yield* socket.send(text(`get ${key}\r\n`), T)
    const first = yield* line(socket)
    if (first === "END") return null
    const match = /^VALUE (\S+) (\d+) (\d+)$/.exec(first)
    if (match === null) return assert.fail(`not a VALUE line: ${first}`)
    assert.strictEqual(match[1], key)
    const length = Number(match[3])
    const body = yield* socket.recv(length + 2, LONG)
    assert.strictEqual(str(body.subarray(length)), "\r\n", "the data block ends in CRLF")
    assert.strictEqual(yield* line(socket), "END")
    return body.subarray(0, length)
  })

const withMemcached = <A, E>(body: (address: string) => Effect.Effect<A, E, TcpClient.TcpClient | Scope.Scope>) =>
  withServer(
    "memcached",
    Effect.suspend(() => startMemcached(memcached ?? assert.fail("memcached missing"))),
    (server) => body(server.address)
  )

describe("interop: memcached", () => {
  checkFdLeaks()

  it.live.skipIf(memcached === undefined)("set, get and delete of a 1 MiB value, checked by hash", () =>
    withMemcached((address) =>
      Effect.gen(function*() {
        const socket = yield* TcpClient.connect(address, T)
        const key = "effect-tcp:blob"
        const value = randomBytes(1024 * 1024)

        yield* socket.sendv([text(`set ${key} 0 0 ${value.length}\r\n`), value, text("\r\n")], LONG)
        assert.strictEqual(yield* line(socket), "STORED")

        const got = yield* get(socket, key)
        if (got === null) return assert.fail("get found nothing after STORED")
        assert.strictEqual(got.length, value.length)
        assert.strictEqual(sha256(got), sha256(value), "get returned different bytes")

        yield* socket.send(text(`delete ${key}\r\n`), T)
        assert.strictEqual(yield* line(socket), "DELETED")
        assert.isNull(yield* get(socket, key), "the value is still there after DELETED")
        yield* socket.send(text(`delete ${key}\r\n`), T)
        assert.strictEqual(yield* line(socket), "NOT_FOUND")

        // Nothing is left over: a receive with deadline 0 finds no byte.
        const none = yield* Effect.flip(socket.recv(1, { deadline: 0 }))
        assert.strictEqual(none._tag, "TimedOut")
        yield* socket.close(T)
      })
    ))
})
