/**
 * TcpTls.client / TcpTls.server: upgrading plaintext sockets in use
 * (STARTTLS), on loopback with certificates openssl made for this file.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { TcpClient, TcpListener, TcpTls } from "../../src/index.ts"
import { checkFdLeaks, forkWaiting, str, text, withTcp } from "../helpers.ts"
import { findOpenssl, makeCertificates } from "./certs.ts"

const openssl = findOpenssl("tls/upgrade")
const T = { timeout: "10 seconds" } as const

describe.skipIf(openssl === undefined)("TcpTls upgrades (STARTTLS)", () => {
  checkFdLeaks()

  it.live("both ends are the library: STARTTLS, then lines over TLS; the plaintext sockets fail Closed", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* makeCertificates(openssl ?? "openssl")
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const server = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
        const plain = yield* listener.accept(T)
        assert.strictEqual(str(yield* plain.recvUntil("\r\n", T)), "STARTTLS")
        yield* plain.send(text("OK\r\n"), T)
        const secure = yield* TcpTls.server(plain, { cert: certs.server.cert, key: certs.server.key, ...T })
        const closed = yield* Effect.flip(plain.recv(1, T))
        assert.strictEqual(closed._tag, "Closed")
        const line = yield* secure.recvUntil("\r\n", T)
        yield* secure.send(text(`echo ${str(line)}\r\n`), T)
        // close_notify and FIN, then the client's.
        yield* secure.done(T)
        assert.strictEqual((yield* Effect.flip(secure.recv(1, T)))._tag, "PeerClosed")
        return secure.tls
      })))
      const plain = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
      yield* plain.send(text("STARTTLS\r\n"), T)
      assert.strictEqual(str(yield* plain.recvUntil("\r\n", T)), "OK")
      assert.isUndefined(plain.tls)
      const secure = yield* TcpTls.client(plain, { ca: certs.ca.cert, serverName: "localhost", ...T })
      assert.strictEqual((yield* Effect.flip(plain.send(text("x"), T)))._tag, "Closed")
      assert.strictEqual(secure.tls?.authorized, true)
      assert.match(secure.tls?.protocol ?? "", /^TLSv1\.[23]$/)
      yield* secure.send(text("hello\r\n"), T)
      assert.strictEqual(str(yield* secure.recvUntil("\r\n", T)), "echo hello")
      assert.strictEqual((yield* Effect.flip(secure.recv(1, T)))._tag, "PeerClosed")
      yield* secure.close(T)
      const serverInfo = yield* Fiber.join(server)
      assert.strictEqual(serverInfo?.authorized, false, "the server asked for no certificate")
    })))

  it.live("STARTTLS against a node:net + node:tls peer", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* makeCertificates(openssl ?? "openssl")
      const server = Net.createServer((socket) => {
        socket.once("data", (chunk) => {
          if (String(chunk) !== "STARTTLS\r\n") return socket.destroy()
          socket.write("OK\r\n", () => {
            const secure = new Tls.TLSSocket(socket, { isServer: true, key: certs.server.key, cert: certs.server.cert })
            secure.on("data", (data) => secure.write(Buffer.concat([Buffer.from("echo "), data])))
            secure.on("end", () => secure.end())
            secure.on("error", () => secure.destroy())
          })
        })
      })
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const port = (server.address() as Net.AddressInfo).port
      const plain = yield* TcpClient.connect(`127.0.0.1:${port}`, T)
      yield* plain.send(text("STARTTLS\r\n"), T)
      assert.strictEqual(str(yield* plain.recvUntil("\r\n", T)), "OK")
      const secure = yield* TcpTls.client(plain, { ca: certs.ca.cert, ...T })
      yield* secure.send(text("ping\r\n"), T)
      assert.strictEqual(str(yield* secure.recvUntil("\r\n", T)), "echo ping")
      yield* secure.close(T)
    })))

  it.live("an upgrade while a receive waits is refused with InvalidArgument, and the plaintext socket goes on", () =>
    withTcp(Effect.gen(function*() {
      const certs = yield* makeCertificates(openssl ?? "openssl")
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
      const server = yield* listener.accept(T)
      const waiting = yield* forkWaiting(server.recv(4, T), "a receive")
      const refused = yield* Effect.flip(TcpTls.server(server, { cert: certs.server.cert, key: certs.server.key, ...T }))
      assert.strictEqual(refused._tag, "InvalidArgument")
      yield* client.send(text("ping"), T)
      assert.strictEqual(str(yield* Fiber.join(waiting)), "ping")
      // Interrupted mid-handshake (the client never answers): everything is released.
      const handshake = yield* forkWaiting(TcpTls.server(server, { cert: certs.server.cert, key: certs.server.key }), "a handshake")
      yield* Fiber.interrupt(handshake)
      assert.strictEqual((yield* Effect.flip(server.recv(1, T)))._tag, "Closed")
      assert.strictEqual((yield* Effect.flip(client.recv(1, T)))._tag, "PeerClosed")
    })))
})
