/**
 * TcpMetrics across a TLS upgrade: the plaintext connection the upgrade
 * replaces is not left counted as active, and its bytes are reported with
 * the TLS connection's when that one is released.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { TcpClient, TcpListener, TcpMetrics, TcpTls } from "../../src/index.ts"
import { checkFdLeaks, eventually, str, TestTcp, text, withTcp } from "../helpers.ts"
import { findOpenssl, makeCertificates } from "./certs.ts"

const openssl = findOpenssl("tls/metrics")
const T = { timeout: "10 seconds" } as const
const active = Effect.map(Metric.value(TcpMetrics.connectionsActive), (state) => state.value)
const received = Effect.map(Metric.value(TcpMetrics.bytesReceived), (state) => state.count)

describe.skipIf(openssl === undefined)("TcpMetrics over TLS", () => {
  checkFdLeaks()

  it.live("a TLS listener's accepts and a STARTTLS upgrade leave no connection counted active", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* makeCertificates(openssl ?? "openssl")
      const before = { active: yield* active, received: yield* received }
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0", { tls: { cert: certs.server.cert, key: certs.server.key } })
        // The handshake needs both ends at once.
        const [client, server] = yield* Effect.all([
          TcpClient.connect(`localhost:${listener.port}`, { tls: { ca: certs.ca.cert }, ...T }),
          listener.accept(T)
        ], { concurrency: 2 })
        yield* client.send(text("ping"), T)
        assert.strictEqual(str(yield* server.recv(4, T)), "ping")
        // STARTTLS on a second, plaintext connection: 9 plaintext bytes, then 4 over TLS.
        const plainListener = yield* TcpListener.listen("127.0.0.1:0")
        const plainClient = yield* TcpClient.connect(`127.0.0.1:${plainListener.port}`, T)
        const plainServer = yield* plainListener.accept(T)
        yield* plainClient.send(text("STARTTLS\n"), T)
        yield* plainServer.recv(9, T)
        const [upgradedServer, upgradedClient] = yield* Effect.all([
          TcpTls.server(plainServer, { cert: certs.server.cert, key: certs.server.key, ...T }),
          TcpTls.client(plainClient, { ca: certs.ca.cert, serverName: "localhost", ...T })
        ], { concurrency: 2 })
        yield* upgradedClient.send(text("pong"), T)
        assert.strictEqual(str(yield* upgradedServer.recv(4, T)), "pong")
      }))
      yield* eventually(Effect.map(active, (now) => now === before.active), "every connection released")
      // ping (4) + STARTTLS (9) + pong (4) received by the application.
      yield* eventually(Effect.map(received, (now) => now - before.received === 17), "the bytes received reported")
    }), TestTcp.pipe(Layer.merge(TcpMetrics.layer))))
})
