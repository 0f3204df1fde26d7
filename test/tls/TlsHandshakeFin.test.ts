/**
 * A client that sends its FIN during the TLS handshake ends the server's
 * handshake at once (TlsHandshakeFailed), as node:tls's own client does:
 * half-open sockets report a FIN as 'end', not 'close', and a server that
 * waited for its deadline held a slot for every port scan and health check.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Net from "node:net"
import { TcpListener, TcpNode, TcpStorage, TcpTls } from "../../src/index.ts"
import { checkFdLeaks, pollUntil, withTcp } from "../helpers.ts"
import { findOpenssl, makeCertificates } from "./certs.ts"

const openssl = findOpenssl("tls/handshake-fin")
const Tcp = TcpNode.layerWith({ slots: 8, bufferSize: 16384 }).pipe(Layer.orDie)
const finAfterHalfHello = (port: number) => {
  const c = Net.connect(port, "127.0.0.1", () => c.end(Buffer.from([22, 3, 1, 2, 0, 1, 0])))
  c.on("error", () => {})
  return c
}

describe.skipIf(openssl === undefined)("FIN during the server's handshake", () => {
  checkFdLeaks()

  it.live("accept fails with TlsHandshakeFailed, not TimedOut at its deadline", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* makeCertificates(openssl ?? "openssl")
      const listener = yield* TcpListener.listen("127.0.0.1:0", { tls: { cert: certs.server.cert, key: certs.server.key } })
      const c = finAfterHalfHello(listener.port)
      const error = yield* Effect.flip(Effect.scoped(listener.accept({ timeout: "3 seconds" })))
      c.destroy()
      assert.strictEqual(error._tag, "TlsHandshakeFailed")
    }), Tcp))

  it.live("TcpTls.server fails with TlsHandshakeFailed, not TimedOut", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* makeCertificates(openssl ?? "openssl")
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const c = finAfterHalfHello(listener.port)
      const plain = yield* listener.accept({ timeout: "3 seconds" })
      const error = yield* Effect.flip(Effect.scoped(TcpTls.server(plain, { cert: certs.server.cert, key: certs.server.key, timeout: "3 seconds" })))
      c.destroy()
      assert.strictEqual(error._tag, "TlsHandshakeFailed")
    }), Tcp))

  it.live("serve (default handshakeTimeout 10 s) gives the slot back at once", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* makeCertificates(openssl ?? "openssl")
      const listener = yield* TcpListener.listen("127.0.0.1:0", { tls: { cert: certs.server.cert, key: certs.server.key } })
      yield* Effect.forkChild(listener.pipe(TcpListener.serve(() => Effect.void)))
      const c = finAfterHalfHello(listener.port)
      yield* pollUntil(Effect.map(TcpStorage.stats, (s) => s.inUse === 1), 100)
      const released = yield* pollUntil(Effect.map(TcpStorage.stats, (s) => s.inUse === 0), 200) // ~2 s
      c.destroy()
      assert.isTrue(released, "the slot is held until handshakeTimeout (10 s)")
      yield* listener.close
    }), Tcp))
})
