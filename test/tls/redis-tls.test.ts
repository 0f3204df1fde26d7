/**
 * TLS interop with a server nobody here wrote: a TLS-only `redis-server` on
 * 127.0.0.1 with a certificate openssl made for this file, driven through
 * `TcpClient.connect(address, { tls })` and `TcpClient.pool` with exact
 * receives and `recvUntil` over the decrypted stream.
 *
 * Skipped (with the reason printed) when `openssl` (3.0+) or a
 * `redis-server` built with TLS is not on PATH.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import { randomBytes } from "node:crypto"
import { TcpClient } from "../../src/index.ts"
import type { TcpError, TcpStorage } from "../../src/index.ts"
import { checkFdLeaks, failsWith, sha256, str, text } from "../helpers.ts"
import { call, command } from "../interop/redis-server.ts"
import { withServer } from "../interop/server-process.ts"
import { findOpenssl, makeCertificates, OTHER_NAME } from "./certs.ts"
import type { TestCertificates } from "./certs.ts"
import { findRedisTls, startRedisTls } from "./redis-tls.ts"
import type { RedisTls } from "./redis-tls.ts"

const openssl = findOpenssl("tls/redis")
const redisServer = openssl === undefined ? undefined : findRedisTls("tls/redis")

const T = { timeout: "5 seconds" } as const

type Tcp = TcpClient.TcpClient | TcpStorage.TcpStorage

/**
 * Runs `body` against a fresh TLS redis-server with fresh certificates; the
 * pool's slots must all be back afterwards, and a hang fails after 40 s
 * (`withServer`).
 */
const withRedisTls = <A, E>(
  body: (redis: RedisTls, certs: TestCertificates) => Effect.Effect<A, E, Tcp | Scope.Scope>
) =>
  withServer(
    "redis TLS",
    Effect.gen(function*() {
      const binary = redisServer ?? assert.fail("redis-server with TLS missing")
      const certs = yield* makeCertificates(openssl ?? assert.fail("openssl missing"))
      return { redis: yield* startRedisTls(binary, certs), certs }
    }),
    ({ certs, redis }) => body(redis, certs)
  )

/** Asserts `error` is `CertificateRejected` (EPROTO) for `reason`. */
const expectRejected = (error: TcpError.ConnectError | TcpError.TlsError, reason: string) => {
  assert.strictEqual(error._tag, "CertificateRejected", String(error))
  if (error._tag === "CertificateRejected") {
    assert.strictEqual(error.reason, reason, error.message)
    assert.strictEqual(error.errno, "EPROTO")
  }
}

describe.skipIf(redisServer === undefined)("tls interop: redis-server over TLS", () => {
  checkFdLeaks()

  it.live("PING, SET and GET of a 100 KiB value (by hash); the connection is verified TLS 1.2/1.3", () =>
    withRedisTls((redis, certs) =>
      Effect.gen(function*() {
        const socket = yield* TcpClient.connect(redis.address, {
          tls: { ca: certs.ca.cert, serverName: "localhost" },
          ...T
        })
        const info = socket.tls ?? assert.fail("a TLS connection has socket.tls")
        assert.match(info.protocol ?? "", /^TLSv1\.[23]$/)
        assert.isTrue(info.authorized)
        assert.isUndefined(info.authorizationError)
        assert.strictEqual(info.peerCertificate?.subject.CN, "localhost")

        // Inline PING: the reply is exactly 7 bytes.
        yield* socket.send(text("PING\r\n"), T)
        assert.strictEqual(str(yield* socket.recv(7, T)), "+PONG\r\n")

        const value = new Uint8Array(randomBytes(100 * 1024))
        yield* socket.sendv(command("SET", "effect-tcp:tls-blob", value), T)
        assert.strictEqual(str(yield* socket.recvUntil("\r\n", { max: 64, ...T })), "+OK")

        yield* socket.sendv(command("GET", "effect-tcp:tls-blob"), T)
        const header = str(yield* socket.recvUntil("\r\n", { max: 64, ...T }))
        assert.strictEqual(header, `$${value.length}`)
        const body = yield* socket.recv(value.length + 2, T)
        assert.strictEqual(str(body.subarray(value.length)), "\r\n")
        assert.strictEqual(sha256(body.subarray(0, value.length)), sha256(value))

        // Nothing more was sent: a receive with deadline 0 finds no byte.
        assert.strictEqual((yield* Effect.flip(socket.recv(1, { deadline: 0 })))._tag, "TimedOut")
        yield* socket.close(T)
      })
    ))

  it.live("without the CA: CertificateRejected SELF_SIGNED_CERT_IN_CHAIN (redis sends the CA in its chain)", () =>
    withRedisTls((redis) =>
      Effect.gen(function*() {
        const error = yield* failsWith(
          () => TcpClient.connect(redis.address, { tls: { serverName: "localhost" }, ...T }),
          "CertificateRejected",
          "no CA"
        )
        expectRejected(error, "SELF_SIGNED_CERT_IN_CHAIN")
      })
    ))

  it.live("a server name the certificate does not carry: CertificateRejected ERR_TLS_CERT_ALTNAME_INVALID", () =>
    withRedisTls((redis, certs) =>
      Effect.gen(function*() {
        const error = yield* failsWith(
          () => TcpClient.connect(redis.address, { tls: { ca: certs.ca.cert, serverName: OTHER_NAME }, ...T }),
          "CertificateRejected",
          "wrong name"
        )
        expectRejected(error, "ERR_TLS_CERT_ALTNAME_INVALID")
      })
    ))

  it.live("rejectUnauthorized: false connects without the CA, unauthorized, and talks", () =>
    withRedisTls((redis) =>
      Effect.gen(function*() {
        const socket = yield* TcpClient.connect(redis.address, {
          tls: { serverName: "localhost", rejectUnauthorized: false },
          ...T
        })
        const info = socket.tls ?? assert.fail("a TLS connection has socket.tls")
        assert.isFalse(info.authorized)
        assert.strictEqual(info.authorizationError, "SELF_SIGNED_CERT_IN_CHAIN")
        assert.match(info.protocol ?? "", /^TLSv1\.[23]$/)
        assert.strictEqual(yield* call(socket, "PING"), "+PONG")
        yield* socket.close(T)
      })
    ))

  it.live("done() over TLS: close_notify and FIN reach redis, which closes, and recv fails PeerClosed", () =>
    withRedisTls((redis, certs) =>
      Effect.gen(function*() {
        const socket = yield* TcpClient.connect(redis.address, {
          tls: { ca: certs.ca.cert, serverName: "localhost" },
          ...T
        })
        assert.strictEqual(yield* call(socket, "PING"), "+PONG")
        // No QUIT: redis closes only because our side ended.
        yield* socket.done(T)
        const closed = yield* Effect.flip(socket.recv(1, T))
        assert.strictEqual(closed._tag, "PeerClosed", String(closed))
        yield* socket.close(T)
      })
    ))

  it.live("TcpClient.pool with tls, size 2: 10 sequential uses share the server's connections (CLIENT ID)", () =>
    withRedisTls((redis, certs) =>
      Effect.gen(function*() {
        const pool = yield* TcpClient.pool(redis.address, {
          size: 2,
          tls: { ca: certs.ca.cert, serverName: "localhost" }
        })
        const ids: Array<string> = []
        for (let i = 0; i < 10; i++) {
          const id = yield* Effect.scoped(Effect.gen(function*() {
            const socket = yield* pool.get(T)
            assert.isTrue(socket.tls?.authorized, `use ${i} is over verified TLS`)
            return yield* call(socket, "CLIENT", "ID")
          }))
          assert.match(id, /^:\d+$/)
          ids.push(id)
        }
        // Sequential uses: the first connection is idle again for every next one.
        assert.deepStrictEqual(new Set(ids), new Set([ids[0]]), `server-side connections: ${ids.join(", ")}`)
        const stats = yield* pool.stats
        assert.deepInclude(stats, { created: 1, reused: 9, discarded: 0, inUse: 0, waiting: 0, open: 1, idle: 1 })
      })
    ))
})
