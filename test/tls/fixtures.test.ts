/**
 * The TLS fixtures checked with raw node:tls only, so they are known good
 * before the library's TLS is tested with them: the certificates `openssl`
 * makes are accepted or rejected for the reasons they are made for, redis
 * answers over TLS, and `openssl s_client` echoes through a node:tls server.
 *
 * The codes Node 24 (OpenSSL 3) gives here, for `CertificateRejected.reason`:
 * - self-signed server, client trusting the CA: DEPTH_ZERO_SELF_SIGNED_CERT
 * - certificate for other.example, servername localhost: ERR_TLS_CERT_ALTNAME_INVALID
 *   (Node's own check after the chain verified; with rejectUnauthorized:
 *   false, `authorized` is false and `authorizationError` is that code)
 * - expired (2020-01-01..02), signed by the CA: CERT_HAS_EXPIRED
 * - leaf signed by the CA, client without the CA: UNABLE_TO_VERIFY_LEAF_SIGNATURE
 *   when the server sends the leaf only (node:tls with `cert: leaf`), but
 *   SELF_SIGNED_CERT_IN_CHAIN when it sends the CA too: redis-server does
 *   (OpenSSL builds its chain from --tls-ca-cert-file), so "no CA" against
 *   redis is SELF_SIGNED_CERT_IN_CHAIN
 * - server with requestCert, client without a certificate: the client's
 *   handshake completes (TLS 1.3), then its first read fails with
 *   ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED
 */
import { assert, describe, it } from "@effect/vitest"
import { createPrivateKey, X509Certificate } from "node:crypto"
import { existsSync } from "node:fs"
import * as Tls from "node:tls"
import { Effect } from "effect"
import { checkFdLeaks, eventually } from "../helpers.ts"
import { EXPIRED_NOT_AFTER, findOpenssl, makeCertificates, OTHER_NAME } from "./certs.ts"
import type { TestCertificates } from "./certs.ts"
import { tlsEchoServer, tlsHandshake } from "./node-tls.ts"
import type { HandshakeOutcome } from "./node-tls.ts"
import { opensslClient } from "./openssl-client.ts"
import { findRedisTls, startRedisTls } from "./redis-tls.ts"

const openssl = findOpenssl("tls/fixtures")
const redisServer = openssl === undefined ? undefined : findRedisTls("tls/fixtures")

/** The openssl binary, known present where these tests run (they skip otherwise). */
const opensslBinary = (): string => openssl ?? assert.fail("openssl missing")

/** The localhost server of `certs`, for `tlsEchoServer`. */
const serving = (pair: { readonly cert: string; readonly key: string }) => ({ cert: pair.cert, key: pair.key })

/** A node:tls client's options for `localhost` (SNI and the name checked) at 127.0.0.1:`port`, with `options` added. */
const localhost = (port: number, options: Tls.ConnectionOptions = {}): Tls.ConnectionOptions => ({
  port,
  host: "127.0.0.1",
  servername: "localhost",
  ...options
})

const expectFailed = (outcome: HandshakeOutcome, code: string) => {
  assert.strictEqual(outcome._tag, "Failed", `expected ${code}, got ${JSON.stringify(outcome)}`)
  if (outcome._tag === "Failed") assert.strictEqual(outcome.code, code, outcome.message)
}

/** Writes `line` on a connected node:tls socket and waits for `expected` back (bounded by the socket's errors and close). */
const exchange = (socket: Tls.TLSSocket, line: string, expected: string): Effect.Effect<string, Error> =>
  Effect.callback<string, Error>((resume) => {
    let got = ""
    const onData = (chunk: Buffer) => {
      got += chunk.toString()
      if (got.includes(expected)) {
        cleanup()
        resume(Effect.succeed(got))
      }
    }
    const onError = (error: Error) => {
      cleanup()
      resume(Effect.fail(error))
    }
    const onClose = () => {
      cleanup()
      resume(Effect.fail(new Error(`closed before ${JSON.stringify(expected)}; got ${JSON.stringify(got)}`)))
    }
    const cleanup = () => {
      socket.off("data", onData)
      socket.off("error", onError)
      socket.off("close", onClose)
    }
    socket.on("data", onData)
    socket.once("error", onError)
    socket.once("close", onClose)
    socket.write(line)
    return Effect.sync(cleanup)
  })

/** A node:tls client connected (handshake done) with `options`, destroyed with the scope. */
const connected = (options: Tls.ConnectionOptions) =>
  Effect.acquireRelease(
    Effect.callback<Tls.TLSSocket, Error>((resume) => {
      const socket = Tls.connect(options)
      socket.once("secureConnect", () => resume(Effect.succeed(socket)))
      socket.once("error", (error) => resume(Effect.fail(error)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )

const withCerts = <A, E, R>(body: (certs: TestCertificates) => Effect.Effect<A, E, R>) =>
  Effect.scoped(Effect.flatMap(makeCertificates(opensslBinary()), body))

describe("tls fixtures", () => {
  checkFdLeaks()

  it.live.skipIf(openssl === undefined)("openssl makes the CA, the certificates it signs, and removes them with the scope", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const certs = yield* Effect.scoped(
        Effect.gen(function*() {
          const certs = yield* makeCertificates(opensslBinary())
          console.log(`[tls/fixtures] certificates made in ${Date.now() - started} ms`)
          const ca = new X509Certificate(certs.ca.cert)
          assert.isTrue(ca.ca, "the CA is a CA")
          for (const name of ["server", "client", "otherName", "expired"] as const) {
            const cert = new X509Certificate(certs[name].cert)
            assert.isTrue(cert.checkIssued(ca), `${name} names the CA as issuer`)
            assert.isTrue(cert.verify(ca.publicKey), `${name} is signed by the CA`)
            assert.isFalse(cert.ca, `${name} is not a CA`)
            assert.isTrue(existsSync(certs[name].certFile) && existsSync(certs[name].keyFile), `${name}'s files`)
          }
          const server = new X509Certificate(certs.server.cert)
          assert.strictEqual(server.subjectAltName, "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1")
          assert.strictEqual(server.checkHost("localhost"), "localhost")
          assert.strictEqual(server.checkIP("127.0.0.1"), "127.0.0.1")
          assert.strictEqual(server.checkIP("::1"), "::1")
          assert.isTrue(server.checkPrivateKey(createPrivateKey(certs.server.key)), "the server key matches its certificate")
          const selfSigned = new X509Certificate(certs.selfSigned.cert)
          assert.isTrue(selfSigned.checkIssued(selfSigned) && !selfSigned.checkIssued(ca), "self-signed, not from the CA")
          assert.strictEqual(selfSigned.checkHost("localhost"), "localhost")
          const other = new X509Certificate(certs.otherName.cert)
          assert.strictEqual(other.subjectAltName, `DNS:${OTHER_NAME}`)
          assert.isUndefined(other.checkHost("localhost"))
          const expired = new X509Certificate(certs.expired.cert)
          assert.strictEqual(expired.validToDate.toISOString(), "2020-01-02T00:00:00.000Z", EXPIRED_NOT_AFTER)
          assert.strictEqual(expired.checkHost("localhost"), "localhost")
          assert.include(new X509Certificate(certs.client.cert).keyUsage ?? [], "1.3.6.1.5.5.7.3.2", "clientAuth")
          return certs
        })
      )
      assert.isFalse(existsSync(certs.dir), "the temporary directory is removed with the scope")
    }))

  it.live.skipIf(openssl === undefined)("a client trusting the CA verifies the localhost certificate and echoes", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const echo = yield* tlsEchoServer(serving(certs.server))
        const byName = yield* tlsHandshake(localhost(echo.port, { ca: certs.ca.cert }))
        assert.deepInclude(byName, { _tag: "Connected", authorized: true, authorizationError: undefined })
        // By IP literal (no SNI): the IP subjectAltName matches.
        const byIp = yield* tlsHandshake({ port: echo.port, host: "127.0.0.1", ca: certs.ca.cert })
        assert.deepInclude(byIp, { _tag: "Connected", authorized: true })
        const socket = yield* connected(localhost(echo.port, { ca: certs.ca.cert }))
        assert.strictEqual(yield* exchange(socket, "hello\n", "hello\n"), "hello\n")
      })
    ))

  it.live.skipIf(openssl === undefined)("the self-signed certificate fails with DEPTH_ZERO_SELF_SIGNED_CERT", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const echo = yield* tlsEchoServer(serving(certs.selfSigned))
        expectFailed(
          yield* tlsHandshake(localhost(echo.port, { ca: certs.ca.cert })),
          "DEPTH_ZERO_SELF_SIGNED_CERT"
        )
        // Trusting that very certificate makes it pass: the failure is about trust, not the certificate.
        assert.deepInclude(
          yield* tlsHandshake(localhost(echo.port, { ca: certs.selfSigned.cert })),
          { _tag: "Connected", authorized: true }
        )
      })
    ))

  it.live.skipIf(openssl === undefined)("the certificate for another name fails with ERR_TLS_CERT_ALTNAME_INVALID", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const echo = yield* tlsEchoServer(serving(certs.otherName))
        expectFailed(
          yield* tlsHandshake(localhost(echo.port, { ca: certs.ca.cert })),
          "ERR_TLS_CERT_ALTNAME_INVALID"
        )
        assert.deepInclude(
          yield* tlsHandshake({ port: echo.port, host: "127.0.0.1", servername: OTHER_NAME, ca: certs.ca.cert }),
          { _tag: "Connected", authorized: true },
          "the right name verifies"
        )
        assert.deepInclude(
          yield* tlsHandshake(localhost(echo.port, { ca: certs.ca.cert, rejectUnauthorized: false })),
          { _tag: "Connected", authorized: false, authorizationError: "ERR_TLS_CERT_ALTNAME_INVALID" },
          "rejectUnauthorized: false connects, unauthorized"
        )
      })
    ))

  it.live.skipIf(openssl === undefined)("the expired certificate fails with CERT_HAS_EXPIRED", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const echo = yield* tlsEchoServer(serving(certs.expired))
        expectFailed(
          yield* tlsHandshake(localhost(echo.port, { ca: certs.ca.cert })),
          "CERT_HAS_EXPIRED"
        )
      })
    ))

  it.live.skipIf(openssl === undefined)("without the CA the leaf fails with UNABLE_TO_VERIFY_LEAF_SIGNATURE", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const echo = yield* tlsEchoServer(serving(certs.server))
        expectFailed(
          yield* tlsHandshake(localhost(echo.port)),
          "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
        )
        const chained = yield* tlsEchoServer({ cert: certs.server.cert + certs.ca.cert, key: certs.server.key })
        expectFailed(
          yield* tlsHandshake(localhost(chained.port)),
          "SELF_SIGNED_CERT_IN_CHAIN"
        )
      })
    ))

  it.live.skipIf(openssl === undefined)("a server requesting a certificate accepts the client certificate only", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const echo = yield* tlsEchoServer({
          ...serving(certs.server),
          ca: certs.ca.cert,
          requestCert: true,
          rejectUnauthorized: true
        })
        const base = localhost(echo.port, { ca: certs.ca.cert })
        const withCert = yield* connected({ ...base, cert: certs.client.cert, key: certs.client.key })
        assert.strictEqual(yield* exchange(withCert, "mutual\n", "mutual\n"), "mutual\n")
        yield* eventually(() => echo.peers.length === 1, "the server has its peer")
        const peer = echo.peers[0]
        assert.isTrue(peer?.authorized, "the server authorized the client certificate")
        assert.strictEqual(peer?.getPeerCertificate().subject.CN, "effect-tcp-test-client")
        // TLS 1.3: the client's side of the handshake completes before the
        // server checks the client; the refusal arrives as an alert.
        const withoutCert = yield* connected(base)
        const refused = yield* Effect.flip(exchange(withoutCert, "anonymous\n", "anonymous\n"))
        assert.strictEqual((refused as Error & { code?: string }).code, "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED")
        yield* eventually(() => echo.handshakeErrors.length === 1, "the server saw the handshake fail")
      })
    ))

  it.live.skipIf(redisServer === undefined)("redis-server answers PING with +PONG over TLS, and is rejected without the CA (its chain holds the CA)", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const redis = yield* startRedisTls(redisServer ?? assert.fail("redis-server missing"), certs)
        const socket = yield* connected(localhost(redis.port, { ca: certs.ca.cert }))
        assert.strictEqual(yield* exchange(socket, "PING\r\n", "\r\n"), "+PONG\r\n")
        assert.strictEqual(
          yield* exchange(socket, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n", "\r\n"),
          "+OK\r\n"
        )
        assert.strictEqual(yield* exchange(socket, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "v1\r\n"), "$2\r\nv1\r\n")
        expectFailed(
          yield* tlsHandshake(localhost(redis.port)),
          "SELF_SIGNED_CERT_IN_CHAIN"
        )
      })
    ))

  it.live.skipIf(openssl === undefined)("openssl s_client echoes through a node:tls server and finishes with close_notify", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const echo = yield* tlsEchoServer(serving(certs.server))
        const client = yield* opensslClient(opensslBinary(), { port: echo.port, caFile: certs.ca.certFile })
        yield* client.waitForHandshake()
        assert.include(client.stderr(), "Verification: OK")
        // Lines starting with Q or R are data here (-nocommands), not s_client commands.
        yield* client.send("hello\nQuit\nR\n")
        assert.strictEqual(yield* client.waitForOutput("R\n"), "hello\nQuit\nR\n")
        const peer = echo.peers[0] ?? assert.fail("the server has no peer")
        let peerEnded = false
        peer.once("end", () => {
          peerEnded = true
        })
        yield* client.end
        const exit = yield* client.exit()
        assert.strictEqual(exit.code, 0, exit.stderr)
        yield* eventually(() => peerEnded, "the server saw the client finish")
      })
    ))

  it.live.skipIf(openssl === undefined)("openssl s_client refuses the self-signed server and exits 1 before sending", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const echo = yield* tlsEchoServer(serving(certs.selfSigned))
        const client = yield* opensslClient(opensslBinary(), { port: echo.port, caFile: certs.ca.certFile })
        yield* client.send("never\n")
        const exit = yield* client.exit()
        assert.strictEqual(exit.code, 1)
        assert.strictEqual(exit.stdout, "")
        assert.include(exit.stderr, "self-signed certificate")
        yield* Effect.flip(client.waitForHandshake())
      })
    ))
})
