/**
 * TLS under `TcpTest.layer`: no sockets and no crypto, the same rules.
 * Connects and listens with `tls` carry bytes and show nominal `socket.tls`;
 * `TcpTest.failTls` makes exactly the next handshakes fail with the error
 * given, on either end; STARTTLS loses no byte sent across the upgrade; bad
 * TLS options are `InvalidArgument`, in memory as on Node.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer } from "effect"
import type { Scope } from "effect"
import { TcpClient, TcpError, TcpListener, TcpNode, TcpStorage, TcpTest, TcpTls } from "../../src/index.ts"
import type { TcpSocket } from "../../src/index.ts"
import {
  bothLayers,
  checkFdLeaks,
  expectPoolIdle,
  failsWith,
  handshakesFailed,
  loopbackPair,
  onLayer,
  str,
  text
} from "../helpers.ts"

const ADDRESS = "127.0.0.1:7443"
const T = { timeout: "2 seconds" } as const
// In memory the PEM text is not parsed: anything stands for a certificate.
const SERVER_TLS = { cert: "fake certificate", key: "fake key" } as const

type Env = TcpTest.TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage | Scope.Scope

/** Runs `body` in its own scope on a fresh in-memory network, then checks every socket and slot came back. */
const run = <A, E>(body: Effect.Effect<A, E, Env>): Effect.Effect<A, E> =>
  Effect.gen(function*() {
    const result = yield* Effect.scoped(body)
    yield* expectPoolIdle
    assert.strictEqual(yield* TcpTest.openSockets, 0, "sockets left open")
    return result
  }).pipe(Effect.provide(TcpTest.layer))

/** `socket` echoes one line back, prefixed with `echo `. */
const echoLine = (socket: TcpSocket.TcpSocket) =>
  Effect.flatMap(socket.recvUntil("\r\n", T), (line) => socket.send(text(`echo ${str(line)}\r\n`), T))

/** Sends `line` and expects it echoed back. */
const expectEcho = (socket: TcpSocket.TcpSocket, line: string) =>
  Effect.gen(function*() {
    yield* socket.send(text(`${line}\r\n`), T)
    assert.strictEqual(str(yield* socket.recvUntil("\r\n", T)), `echo ${line}`)
  })

const NOMINAL = {
  protocol: "TLSv1.3",
  cipher: "TLS_AES_128_GCM_SHA256",
  authorized: true,
  authorizationError: undefined,
  peerCertificate: undefined
} as const

const handshakeFailed = TcpError.make({
  tag: "TlsHandshakeFailed",
  syscall: "connect",
  address: ADDRESS,
  reason: "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION"
})
const certificateRejected = TcpError.make({
  tag: "CertificateRejected",
  syscall: "connect",
  address: ADDRESS,
  reason: "CERT_HAS_EXPIRED"
})
const TLS_ERRORS: ReadonlyArray<TcpError.TlsError> = [handshakeFailed, certificateRejected]

describe("TLS in memory", () => {
  it.effect("connect with tls to an in-memory TLS listener: round trip, nominal socket.tls, first ALPN protocol", () =>
    run(Effect.gen(function*() {
      const listener = yield* TcpListener.listen(ADDRESS, { tls: { ...SERVER_TLS, alpn: ["h2", "http/1.1"] } })
      const server = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
        const socket = yield* listener.accept(T)
        yield* echoLine(socket)
        return socket.tls
      })))
      const client = yield* TcpClient.connect(ADDRESS, { tls: { alpn: ["h2", "http/1.1"] }, ...T })
      yield* expectEcho(client, "hello")
      assert.deepStrictEqual(client.tls, { ...NOMINAL, alpnProtocol: "h2" })
      assert.deepStrictEqual(yield* Fiber.join(server), { ...NOMINAL, alpnProtocol: "h2" })
      // Without alpn no protocol is agreed.
      const bareServer = yield* Effect.forkChild(Effect.scoped(Effect.map(listener.accept(T), (s) => s.tls)))
      const bare = yield* TcpClient.connect(ADDRESS, { tls: {}, ...T })
      assert.deepStrictEqual(bare.tls, { ...NOMINAL, alpnProtocol: undefined })
      assert.deepStrictEqual(yield* Fiber.join(bareServer), { ...NOMINAL, alpnProtocol: "h2" }, "the server offers h2")
      // A plaintext connection has no tls at all.
      const plainListener = yield* TcpListener.listen("127.0.0.1:7444")
      const plainServer = yield* Effect.forkChild(Effect.scoped(Effect.map(plainListener.accept(T), (s) => s.tls)))
      const plain = yield* TcpClient.connect("127.0.0.1:7444", T)
      assert.isUndefined(plain.tls)
      assert.isUndefined(yield* Fiber.join(plainServer))
    })))

  describe("TcpTest.failTls", () => {
    for (const injected of TLS_ERRORS) {
      it.effect(`${injected._tag}: the next TLS connect fails with exactly it, the one after works`, () =>
        run(Effect.gen(function*() {
          const listener = yield* TcpListener.listen(ADDRESS)
          yield* Effect.forkChild(listener.pipe(TcpListener.serve(echoLine)))
          yield* TcpTest.failTls(ADDRESS, injected, { times: 1 })
          const error = yield* failsWith(
            () => Effect.scoped(TcpClient.connect(ADDRESS, { tls: {}, ...T })),
            injected._tag,
            "the injected handshake"
          )
          assert.strictEqual(error, injected)
          const client = yield* TcpClient.connect(ADDRESS, { tls: {}, ...T })
          yield* expectEcho(client, "after")
          assert.isDefined(client.tls)
          yield* client.close(T)
          yield* listener.close
        })))

      it.effect(`${injected._tag}: an in-memory TLS listener's next accept fails with exactly it`, () =>
        run(Effect.gen(function*() {
          const listener = yield* TcpListener.listen(ADDRESS, { tls: SERVER_TLS })
          yield* TcpTest.failTls(ADDRESS, injected, { times: 1 })
          // A plaintext client runs no handshake of its own: the listener's is the one that fails.
          const victim = yield* TcpClient.connect(ADDRESS, T)
          const error = yield* failsWith(() => Effect.scoped(listener.accept(T)), injected._tag, "accept")
          assert.strictEqual(error, injected)
          // The connection that failed its handshake was dropped.
          const dropped = yield* Effect.flip(victim.recv(1, T))
          assert.include(["ConnReset", "PeerClosed"], dropped._tag)
          assert.strictEqual(handshakesFailed(listener), 1)
          const accepting = yield* Effect.forkChild(Effect.scoped(Effect.flatMap(listener.accept(T), echoLine)))
          const client = yield* TcpClient.connect(ADDRESS, { tls: {}, ...T })
          yield* expectEcho(client, "next")
          yield* Fiber.join(accepting)
        })))

      it.effect(`${injected._tag}: serve never hands a connection that failed its handshake to the handler`, () =>
        run(Effect.gen(function*() {
          const listener = yield* TcpListener.listen(ADDRESS, { tls: SERVER_TLS })
          yield* TcpTest.failTls(ADDRESS, injected, { times: 1 })
          const handled: Array<string> = []
          yield* Effect.forkChild(listener.pipe(TcpListener.serve((socket) =>
            Effect.flatMap(socket.recvUntil("\r\n", T), (line) => {
              handled.push(str(line))
              return socket.send(text(`echo ${str(line)}\r\n`), T)
            })
          )))
          const victim = yield* TcpClient.connect(ADDRESS, T)
          yield* victim.send(text("victim\r\n"), T)
          const dropped = yield* Effect.flip(victim.recv(1, T))
          assert.include(["ConnReset", "PeerClosed"], dropped._tag)
          const client = yield* TcpClient.connect(ADDRESS, { tls: {}, ...T })
          yield* expectEcho(client, "served")
          assert.deepStrictEqual(handled, ["served"])
          assert.strictEqual(handshakesFailed(listener), 1)
          yield* listener.close
        })))
    }
  })

  it.effect("STARTTLS: a plaintext line, then both ends upgrade; bytes sent before the server upgraded arrive", () =>
    run(Effect.gen(function*() {
      const listener = yield* TcpListener.listen(ADDRESS)
      const clientSentEarly = yield* Deferred.make<void>()
      const server = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
        const plain = yield* listener.accept(T)
        assert.strictEqual(str(yield* plain.recvUntil("\r\n", T)), "STARTTLS")
        yield* plain.send(text("OK\r\n"), T)
        // The client upgrades and writes before this end has upgraded.
        yield* Deferred.await(clientSentEarly)
        const secure = yield* TcpTls.server(plain, { ...SERVER_TLS, ...T })
        assert.strictEqual((yield* Effect.flip(plain.recv(1, T)))._tag, "Closed")
        assert.strictEqual(str(yield* secure.recvUntil("\r\n", T)), "early")
        yield* secure.send(text("late\r\n"), T)
        yield* secure.close(T)
        return secure.tls
      })))
      const plain = yield* TcpClient.connect(ADDRESS, T)
      yield* plain.send(text("STARTTLS\r\n"), T)
      assert.strictEqual(str(yield* plain.recvUntil("\r\n", T)), "OK")
      assert.isUndefined(plain.tls)
      const secure = yield* TcpTls.client(plain, { serverName: "mail.example", ...T })
      yield* secure.send(text("early\r\n"), T)
      yield* Deferred.succeed(clientSentEarly, undefined)
      assert.strictEqual((yield* Effect.flip(plain.send(text("x"), T)))._tag, "Closed")
      assert.strictEqual((yield* Effect.flip(plain.recv(1, T)))._tag, "Closed")
      assert.strictEqual(str(yield* secure.recvUntil("\r\n", T)), "late")
      assert.deepStrictEqual(secure.tls, { ...NOMINAL, alpnProtocol: undefined })
      assert.strictEqual((yield* Effect.flip(secure.recv(1, T)))._tag, "PeerClosed")
      yield* secure.close(T)
      assert.deepStrictEqual(yield* Fiber.join(server), { ...NOMINAL, alpnProtocol: undefined })
      yield* listener.close
    })))
})

// ------------------------------------------------------------ bad options

const badClientOptions: ReadonlyArray<readonly [string, TcpTls.ClientOptions]> = [
  ["alpn not strings", { alpn: [1, 2] } as unknown as TcpTls.ClientOptions],
  ["alpn not a list", { alpn: "h2" } as unknown as TcpTls.ClientOptions],
  ["alpn with an empty name", { alpn: [""] }],
  ["rejectUnauthorized not boolean", { rejectUnauthorized: "no" } as unknown as TcpTls.ClientOptions],
  ["serverName empty", { serverName: "" }],
  ["cert without key", { cert: "fake certificate" }],
  ["options not an object", "tls" as unknown as TcpTls.ClientOptions]
]

/** The client's bad options an upgrade can be given beside its deadline (an object). */
const badUpgradeOptions = badClientOptions.filter(([, options]) => typeof options === "object")

const badServerOptions: ReadonlyArray<readonly [string, TcpTls.ServerOptions]> = [
  ["no cert nor key", {} as unknown as TcpTls.ServerOptions],
  ["cert without key", { cert: "fake certificate" } as unknown as TcpTls.ServerOptions],
  ["key without cert", { key: "fake key" } as unknown as TcpTls.ServerOptions],
  ["alpn not strings", { ...SERVER_TLS, alpn: [7] } as unknown as TcpTls.ServerOptions],
  ["rejectUnauthorized not boolean", { ...SERVER_TLS, rejectUnauthorized: 1 } as unknown as TcpTls.ServerOptions],
  ["requestCert not boolean", { ...SERVER_TLS, requestCert: "yes" } as unknown as TcpTls.ServerOptions],
  ["cert a number", { cert: 42, key: "fake key" } as unknown as TcpTls.ServerOptions]
]

const badHandshakeTimeouts: ReadonlyArray<readonly [string, TcpTls.ServerOptions]> = [
  ["handshakeTimeout 0", { ...SERVER_TLS, handshakeTimeout: 0 }],
  ["handshakeTimeout \"0 millis\"", { ...SERVER_TLS, handshakeTimeout: "0 millis" }],
  ["handshakeTimeout negative", { ...SERVER_TLS, handshakeTimeout: -5 }],
  ["handshakeTimeout not a duration", { ...SERVER_TLS, handshakeTimeout: "soon" } as unknown as TcpTls.ServerOptions]
]

describe("bad TLS options are InvalidArgument, never a throw or a defect", () => {
  checkFdLeaks()

  for (const [name, layer] of bothLayers()) {
    it.live(`${name}: connect, listen, TcpTls.client and TcpTls.server`, () =>
      onLayer(layer, Effect.gen(function*() {
        const { client, listener, server } = yield* loopbackPair
        const address = `127.0.0.1:${listener.port}`
        for (const [what, tls] of badClientOptions) {
          const connect = () => Effect.scoped(TcpClient.connect(address, { tls, ...T }))
          yield* failsWith(connect, "InvalidArgument", `connect: ${what}`)
        }
        for (const [what, tls] of badUpgradeOptions) {
          const upgrade = () => Effect.scoped(TcpTls.client(client, { ...tls, ...T }))
          yield* failsWith(upgrade, "InvalidArgument", `TcpTls.client: ${what}`)
        }
        for (const [what, tls] of [...badServerOptions, ...badHandshakeTimeouts]) {
          const listen = () => Effect.scoped(TcpListener.listen("127.0.0.1:0", { tls }))
          yield* failsWith(listen, "InvalidArgument", `listen: ${what}`)
        }
        for (const [what, tls] of badServerOptions) {
          const upgrade = () => Effect.scoped(TcpTls.server(server, { ...tls, ...T }))
          yield* failsWith(upgrade, "InvalidArgument", `TcpTls.server: ${what}`)
        }
        // Nothing was taken from the sockets by the refused upgrades.
        yield* client.send(text("ping"), T)
        assert.strictEqual(str(yield* server.recv(4, T)), "ping")
      })))
  }

  it.live("Node only: certificates that do not parse are InvalidArgument (memory does not parse them)", () =>
    onLayer(Layer.orDie(TcpNode.layerWith({ slots: 8, bufferSize: 16 * 1024 })), Effect.gen(function*() {
      const error = yield* failsWith(
        () => Effect.scoped(TcpListener.listen("127.0.0.1:0", { tls: SERVER_TLS })),
        "InvalidArgument",
        "listen with unparsable PEM"
      )
      assert.match(error.message, /tls/)
      yield* failsWith(
        () => Effect.scoped(TcpClient.connect("127.0.0.1:1", { tls: { ca: "not a certificate" }, ...T })),
        "InvalidArgument",
        "connect with an unparsable CA"
      )
    })))
})
