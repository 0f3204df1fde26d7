/**
 * TLS on connect and listen, on loopback with certificates openssl made for
 * this file: certificates that fail verification and why, peers that do not
 * speak TLS or never answer, deadlines (0, past, -1, a timeout) and
 * interruption, ALPN, the listener's accept, serve's handshakes, and bad
 * options. Types: a connect or listen without `tls` has no TLS error.
 */
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Exit, Fiber, Layer } from "effect"
import type { Scope } from "effect"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { TcpClient, TcpError, TcpListener, TcpStorage } from "../../src/index.ts"
import {
  checkFdLeaks,
  eventually,
  expectPoolIdle,
  expectWaiting,
  handshakesFailed,
  rawServer,
  str,
  text,
  withTcp
} from "../helpers.ts"
import { findOpenssl, makeCertificates, OTHER_NAME, type TestCertificates } from "./certs.ts"
import { tlsEchoServer } from "./node-tls.ts"

const openssl = findOpenssl("tls/connect")
const T = { timeout: "10 seconds" } as const

const certificates = (): Effect.Effect<TestCertificates, Error, Scope.Scope> => makeCertificates(openssl ?? "openssl")

/** A node:tls echo server presenting `which` certificate. */
const echoWith = (certs: TestCertificates, which: keyof Omit<TestCertificates, "dir">, options: Tls.TlsOptions = {}) =>
  tlsEchoServer({ cert: certs[which].cert, key: certs[which].key, ...options })

const expectRejected = (
  exit: Exit.Exit<unknown, TcpError.ConnectError | TcpError.TlsError>,
  tag: TcpError.TlsError["_tag"],
  reason: string
) => {
  assert.isTrue(Exit.isFailure(exit), "the connect failed")
  if (Exit.isSuccess(exit)) return
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  assert.strictEqual(error?._tag, "Fail")
  if (error?._tag !== "Fail") return
  assert.strictEqual(error.error._tag, tag, error.error.message)
  if (error.error._tag === "TlsHandshakeFailed" || error.error._tag === "CertificateRejected") {
    assert.strictEqual(error.error.reason, reason)
    assert.strictEqual(error.error.errno, "EPROTO")
    assert.strictEqual(error.error.syscall, "connect")
  }
}

describe.skipIf(openssl === undefined)("TLS connect", () => {
  checkFdLeaks()

  it.live("connects to a node:tls server trusting the CA: echo, socket.tls, close_notify then FIN with done", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* certificates()
      const server = yield* echoWith(certs, "server", { ALPNProtocols: ["h2", "echo/1"] })
      const socket = yield* TcpClient.connect(`localhost:${server.port}`, {
        tls: { ca: certs.ca.cert, alpn: ["echo/1"] },
        ...T
      })
      yield* socket.send(text("hello, tls\n"), T)
      assert.strictEqual(str(yield* socket.recvUntil("\n", T)), "hello, tls")
      const info = socket.tls
      assert.isDefined(info)
      assert.isTrue(info?.authorized)
      assert.strictEqual(info?.alpnProtocol, "echo/1")
      assert.match(info?.protocol ?? "", /^TLSv1\.[23]$/)
      assert.isString(info?.cipher)
      assert.strictEqual(info?.peerCertificate?.subject?.CN, "localhost")
      // done: the server sees the end of our stream and ends its own.
      yield* socket.done(T)
      assert.strictEqual((yield* Effect.flip(socket.recv(1, T)))._tag, "PeerClosed")
      yield* socket.close(T)
    })))

  it.live("by IP address the certificate's IP entry is checked (no SNI)", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* certificates()
      const server = yield* echoWith(certs, "server")
      const socket = yield* TcpClient.connect(server.address, { tls: { ca: certs.ca.cert }, ...T })
      assert.isTrue(socket.tls?.authorized)
      const wrong = yield* Effect.exit(Effect.scoped(TcpClient.connect(server.address, {
        tls: { ca: certs.ca.cert, serverName: OTHER_NAME },
        ...T
      })))
      expectRejected(wrong, "CertificateRejected", "ERR_TLS_CERT_ALTNAME_INVALID")
    })))

  it.live("certificates that fail verification are CertificateRejected, with OpenSSL's or Node's reason", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* certificates()
      const cases = [
        ["selfSigned", { ca: certs.ca.cert }, "DEPTH_ZERO_SELF_SIGNED_CERT"],
        ["otherName", { ca: certs.ca.cert }, "ERR_TLS_CERT_ALTNAME_INVALID"],
        ["expired", { ca: certs.ca.cert }, "CERT_HAS_EXPIRED"],
        ["server", {}, "UNABLE_TO_VERIFY_LEAF_SIGNATURE"]
      ] as const
      for (const [which, tls, reason] of cases) {
        const server = yield* echoWith(certs, which)
        const exit = yield* Effect.exit(Effect.scoped(TcpClient.connect(`localhost:${server.port}`, { tls, ...T })))
        expectRejected(exit, "CertificateRejected", reason)
      }
      yield* expectPoolIdle
    })))

  it.live("rejectUnauthorized: false connects to an unverified peer and says why in socket.tls", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* certificates()
      const server = yield* echoWith(certs, "selfSigned")
      const socket = yield* TcpClient.connect(`localhost:${server.port}`, { tls: { rejectUnauthorized: false }, ...T })
      assert.isFalse(socket.tls?.authorized)
      assert.strictEqual(socket.tls?.authorizationError, "DEPTH_ZERO_SELF_SIGNED_CERT")
      yield* socket.send(text("x"), T)
      assert.strictEqual(str(yield* socket.recv(1, T)), "x")
    })))

  it.live("a peer that answers plaintext is TlsHandshakeFailed; one that never answers is TimedOut", () =>
    withTcp(Effect.gen(function*() {
      const garbage = yield* rawServer((socket) => {
        socket.on("data", () => socket.write("HTTP/1.1 400 Bad Request\r\n\r\n"))
      })
      const exit = yield* Effect.exit(Effect.scoped(TcpClient.connect(`127.0.0.1:${garbage.port}`, {
        tls: {},
        ...T
      })))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      assert.strictEqual(error?._tag === "Fail" ? error.error._tag : undefined, "TlsHandshakeFailed")

      const silent = yield* rawServer(() => {})
      const timedOut = yield* Effect.flip(Effect.scoped(TcpClient.connect(`127.0.0.1:${silent.port}`, {
        tls: {},
        timeout: "300 millis"
      })))
      assert.strictEqual(timedOut._tag, "TimedOut")
      yield* expectPoolIdle
    })))

  it.live("deadlines: 0 and a past one never wait, -1 waits until interrupted, and interruption releases everything", () =>
    withTcp(Effect.gen(function*() {
      let connections = 0
      const silent = yield* rawServer(() => {
        connections++
      })
      const address = `127.0.0.1:${silent.port}`
      for (const deadline of [0, Date.now() - 1000]) {
        const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(address, { tls: {}, deadline })))
        assert.strictEqual(error._tag, "TimedOut", `deadline ${deadline}`)
      }
      const before = connections
      const waiting = yield* Effect.forkChild(Effect.scoped(TcpClient.connect(address, { tls: {}, deadline: -1 })))
      yield* eventually(() => connections > before, "the TCP connection is up, the handshake under way")
      yield* expectWaiting(waiting, "a TLS connect with deadline -1")
      yield* Fiber.interrupt(waiting)
      yield* expectPoolIdle
    })))

  it.live("bad TLS options are InvalidArgument before anything connects", () =>
    withTcp(Effect.gen(function*() {
      let connections = 0
      const server = yield* rawServer(() => {
        connections++
      })
      const address = `127.0.0.1:${server.port}`
      const bad: ReadonlyArray<readonly [string, TcpClient.ConnectOptions]> = [
        ["ca not PEM", { tls: { ca: 42 as never } }],
        ["ca not parseable", { tls: { ca: "not a certificate" } }],
        ["cert without key", { tls: { cert: "x" } }],
        ["alpn not strings", { tls: { alpn: [1] as never } }],
        ["rejectUnauthorized not boolean", { tls: { rejectUnauthorized: "no" as never } }],
        ["serverName empty", { tls: { serverName: "" } }],
        ["tls not an object", { tls: "yes" as never }]
      ]
      for (const [what, options] of bad) {
        const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(address, { ...options, timeout: "5 seconds" })))
        assert.strictEqual(error._tag, "InvalidArgument", what)
      }
      yield* Effect.yieldNow
      assert.strictEqual(connections, 0, "nothing connected")
    })))
})

describe.skipIf(openssl === undefined)("TLS listen", () => {
  checkFdLeaks()

  it.live("accept completes the handshake: a node:tls client is served, with ALPN", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* certificates()
      const listener = yield* TcpListener.listen("127.0.0.1:0", {
        tls: { cert: certs.server.cert, key: certs.server.key, alpn: ["echo/1"] }
      })
      const client = Tls.connect({
        port: listener.port,
        host: "127.0.0.1",
        servername: "localhost",
        ca: certs.ca.cert,
        ALPNProtocols: ["echo/1"]
      })
      client.on("error", () => {})
      yield* Effect.addFinalizer(() => Effect.sync(() => client.destroy()))
      const socket = yield* listener.accept(T)
      assert.strictEqual(socket.tls?.alpnProtocol, "echo/1")
      assert.isFalse(socket.tls?.authorized, "no client certificate was asked for")
      client.write("ping")
      assert.strictEqual(str(yield* socket.recv(4, T)), "ping")
      yield* socket.send(text("pong"), T)
      const reply = yield* Effect.callback<string>((resume) => {
        client.once("data", (chunk: Buffer) => resume(Effect.succeed(String(chunk))))
      })
      assert.strictEqual(reply, "pong")
    })))

  it.live("accept: a plaintext client fails the handshake (TlsHandshakeFailed), a silent one times out", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* certificates()
      const listener = yield* TcpListener.listen("127.0.0.1:0", { tls: { cert: certs.server.cert, key: certs.server.key } })
      const plain = Net.connect(listener.port, "127.0.0.1", () => plain.write("GET / HTTP/1.1\r\n\r\n"))
      plain.on("error", () => {})
      yield* Effect.addFinalizer(() => Effect.sync(() => plain.destroy()))
      const failed = yield* Effect.flip(Effect.scoped(listener.accept(T)))
      assert.strictEqual(failed._tag, "TlsHandshakeFailed")
      const silent = Net.connect(listener.port, "127.0.0.1")
      silent.on("error", () => {})
      yield* Effect.addFinalizer(() => Effect.sync(() => silent.destroy()))
      const timedOut = yield* Effect.flip(Effect.scoped(listener.accept({ timeout: "300 millis" })))
      assert.strictEqual(timedOut._tag, "TimedOut")
      yield* expectPoolIdle
    })))

  it.live("serve: a client that fails or stalls its handshake never reaches the handler or holds up the next", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* certificates()
      const listener = yield* TcpListener.listen("127.0.0.1:0", {
        tls: { cert: certs.server.cert, key: certs.server.key, handshakeTimeout: "2 seconds" }
      })
      const handled = yield* Deferred.make<string>()
      let handlers = 0
      yield* Effect.forkScoped(TcpListener.serve(listener, (socket) =>
        Effect.gen(function*() {
          handlers++
          const line = yield* socket.recvUntil("\n", T)
          yield* Deferred.succeed(handled, str(line))
        })))
      // A client that connects and says nothing, then one speaking plaintext.
      const stalled = Net.connect(listener.port, "127.0.0.1")
      stalled.on("error", () => {})
      const plain = Net.connect(listener.port, "127.0.0.1", () => plain.write("hello\n"))
      plain.on("error", () => {})
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          stalled.destroy()
          plain.destroy()
        })
      )
      // A real client is served while the stalled one still waits.
      const client = Tls.connect({ port: listener.port, host: "127.0.0.1", servername: "localhost", ca: certs.ca.cert })
      client.on("error", () => {})
      client.on("secureConnect", () => client.write("tls line\n"))
      yield* Effect.addFinalizer(() => Effect.sync(() => client.destroy()))
      assert.strictEqual(yield* Deferred.await(handled), "tls line")
      yield* eventually(() => handshakesFailed(listener) >= 1, "the plaintext one counted")
      assert.strictEqual(handlers, 1)
    })))

  it.live("bad server options are InvalidArgument from listen", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* certificates()
      const bad: ReadonlyArray<readonly [string, TcpListener.ListenOptions]> = [
        ["no key", { tls: { cert: certs.server.cert } as never }],
        ["key not matching", { tls: { cert: certs.server.cert, key: certs.client.key } }],
        ["handshakeTimeout 0", { tls: { cert: certs.server.cert, key: certs.server.key, handshakeTimeout: 0 } }],
        ["requestCert not boolean", { tls: { cert: certs.server.cert, key: certs.server.key, requestCert: 1 as never } }]
      ]
      for (const [what, options] of bad) {
        const error = yield* Effect.flip(Effect.scoped(TcpListener.listen("127.0.0.1:0", options)))
        assert.strictEqual(error._tag, "InvalidArgument", what)
      }
    })))
})

describe("TLS types (checked by tsc --noEmit)", () => {
  it("only a connect or a listener with tls has TLS errors", () => {
    const plain = () => TcpClient.connect("127.0.0.1:1", { timeout: "1 second" })
    const secure = () => TcpClient.connect("127.0.0.1:1", { tls: { serverName: "x" } })
    expectTypeOf<Effect.Error<ReturnType<typeof plain>>>().toEqualTypeOf<TcpError.ConnectError>()
    expectTypeOf<Effect.Error<ReturnType<typeof secure>>>().toEqualTypeOf<TcpError.ConnectError | TcpError.TlsError>()
    const listenPlain = () => TcpListener.listen("127.0.0.1:0")
    const listenSecure = () => TcpListener.listen("127.0.0.1:0", { tls: { cert: "c", key: "k" } })
    type PlainListener = Effect.Success<ReturnType<typeof listenPlain>>
    type SecureListener = Effect.Success<ReturnType<typeof listenSecure>>
    expectTypeOf<Effect.Error<ReturnType<PlainListener["accept"]>>>().toEqualTypeOf<TcpError.AcceptError>()
    expectTypeOf<Effect.Error<ReturnType<SecureListener["accept"]>>>()
      .toEqualTypeOf<TcpError.AcceptError | TcpError.TlsError>()
    const pool = () => TcpClient.pool("127.0.0.1:1", { size: 1 })
    const tlsPool = () => TcpClient.pool("127.0.0.1:1", { size: 1, tls: {} })
    type Get<P> = P extends TcpClient.ConnectionPool<infer E> ? E : never
    expectTypeOf<Get<Effect.Success<ReturnType<typeof pool>>>>().toEqualTypeOf<TcpError.ConnectError>()
    expectTypeOf<Get<Effect.Success<ReturnType<typeof tlsPool>>>>()
      .toEqualTypeOf<TcpError.ConnectError | TcpError.TlsError>()
    // The checks bite.
    // @ts-expect-error a plain connect has no TLS error
    expectTypeOf<Effect.Error<ReturnType<typeof plain>>>().toEqualTypeOf<TcpError.ConnectError | TcpError.TlsError>()
    void TcpStorage
  })
})

describe.skipIf(openssl === undefined)("README: the TLS snippet", () => {
  it.live("the client meets a TLS PING server, the server echoes a line", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* certificates()
      const cert = certs.server.cert
      const key = certs.server.key
      const pingServer = yield* tlsEchoServer({ cert, key })
      pingServer.server.removeAllListeners("secureConnection")
      pingServer.server.on("secureConnection", (s: Tls.TLSSocket) => s.on("data", () => s.write("+PONG\r\n")))
      // --- as in README.md, with the test's port and CA ---
      const secure = Effect.gen(function*() {
        const socket = yield* TcpClient.connect(`localhost:${pingServer.port}`, {
          tls: { ca: certs.ca.cert },
          timeout: "2 seconds"
        })
        yield* socket.send(new TextEncoder().encode("PING\r\n"))
        const reply = yield* socket.recvUntil("\r\n", { timeout: "2 seconds" })
        return [new TextDecoder().decode(reply), socket.tls?.protocol]
      }).pipe(
        Effect.catchTags({
          CertificateRejected: (e) => Effect.fail(`untrusted server: ${e.reason}`),
          TlsHandshakeFailed: (e) => Effect.fail(`no TLS: ${e.reason}`)
        }),
        Effect.scoped
      )
      const listener = yield* TcpListener.listen("127.0.0.1:0", { tls: { cert, key, alpn: ["echo/1"] } })
      yield* Effect.forkScoped(
        TcpListener.serve(listener, (socket) => Effect.flatMap(socket.recvUntil("\n"), (line) => socket.send(line)))
      )
      // ---
      const [reply, protocol] = yield* secure
      assert.strictEqual(reply, "+PONG")
      assert.strictEqual(protocol, "TLSv1.3")
      const client = yield* TcpClient.connect(`localhost:${listener.port}`, { tls: { ca: certs.ca.cert }, ...T })
      yield* client.send(text("line\n"), T)
      assert.strictEqual(str(yield* client.recv(4, T)), "line")
    })))
})

describe.skipIf(openssl === undefined)("TLS defaults from the client's layer", () => {
  const clientWith = (layer: Layer.Layer<TcpClient.TcpClient, unknown, TcpStorage.TcpStorage>) =>
    layer.pipe(Layer.provideMerge(TcpStorage.layer()))

  it.live("TCP_TLS_CA_FILE and TCP_TLS_SERVER_NAME apply to connects that ask for TLS, under their own options", () =>
    Effect.gen(function*() {
      const certs = yield* certificates()
      const server = yield* echoWith(certs, "server")
      const env = { TCP_TLS_CA_FILE: certs.ca.certFile, TCP_TLS_SERVER_NAME: "localhost" }
      const Client = clientWith(TcpClient.layerConfig.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnvRecord(env)))))
      yield* Effect.gen(function*() {
        // By IP, yet checked as "localhost" with the configured CA.
        const socket = yield* TcpClient.connect(server.address, { tls: {}, ...T })
        assert.isTrue(socket.tls?.authorized)
        // The connect's own serverName wins.
        const wrong = yield* Effect.exit(Effect.scoped(TcpClient.connect(server.address, {
          tls: { serverName: OTHER_NAME },
          ...T
        })))
        expectRejected(wrong, "CertificateRejected", "ERR_TLS_CERT_ALTNAME_INVALID")
        // Without tls, plaintext: the TLS server sees a client that does not speak TLS.
        const plain = yield* TcpClient.connect(server.address, T)
        assert.isUndefined(plain.tls)
      }).pipe(Effect.provide(Client))
      // Without the defaults the same connect is rejected: the defaults did the work.
      const bare = yield* Effect.exit(Effect.scoped(TcpClient.connect(server.address, { tls: {}, ...T })).pipe(
        Effect.provide(clientWith(TcpClient.layer))
      ))
      assert.isTrue(Exit.isFailure(bare))
    }).pipe(Effect.scoped))

  it.live("a CA file that cannot be read, or TLS defaults that do not parse, fail the layer with InvalidArgument", () =>
    Effect.gen(function*() {
      const missing = ConfigProvider.layer(ConfigProvider.fromEnvRecord({ TCP_TLS_CA_FILE: "/nonexistent/ca.pem" }))
      const build = (layer: Layer.Layer<TcpClient.TcpClient, unknown, TcpStorage.TcpStorage>) =>
        Effect.flip(Effect.provide(Effect.void, clientWith(layer)))
      const unreadable = yield* build(TcpClient.layerConfig.pipe(Layer.provide(missing)))
      assert.strictEqual(Reflect.get(Object(unreadable), "_tag"), "InvalidArgument")
      const garbage = yield* build(TcpClient.layerWith({ tls: { ca: "not a certificate" } }))
      assert.strictEqual(Reflect.get(Object(garbage), "_tag"), "InvalidArgument")
    }))
})
