/**
 * TLS interop with a client nobody here wrote: `openssl s_client` against
 * the library's TLS listener (`TcpListener.listen` with `tls`, connections
 * handled by `TcpListener.serve`), with certificates openssl made for this
 * file. The handler echoes lines read with `recvUntil`.
 *
 * Skipped (with the reason printed) when `openssl` 3.0+ is not on PATH.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Fiber, Scope } from "effect"
import type * as Net from "node:net"
import { TcpListener } from "../../src/index.ts"
import type { TcpClient, TcpError, TcpSocket, TcpStorage, TcpTls } from "../../src/index.ts"
import { checkFdLeaks, eventually, handshakesFailed, rawClient, str, text, withTcp } from "../helpers.ts"
import { findOpenssl, makeCertificates } from "./certs.ts"
import type { CertificateFiles, TestCertificates } from "./certs.ts"
import { opensslClient } from "./openssl-client.ts"

const openssl = findOpenssl("tls/s-client")

const T = { timeout: "5 seconds" } as const

/** The openssl binary, known present where these tests run (they skip otherwise). */
const opensslBinary = (): string => openssl ?? assert.fail("openssl missing")

/** What the handler saw of one connection: its TLS state, the lines it echoed, and how it ended. */
interface Served {
  readonly tls: TcpTls.Info | undefined
  readonly lines: Array<string>
  end: string | undefined
}

/**
 * A `serve` handler echoing each "\n"-terminated line until the client
 * ends; every connection it gets is recorded in `served`, and how it ended
 * ("PeerClosed" when the client finished, else the error's tag).
 */
const echoLines = (served: Array<Served>) => (socket: TcpSocket.TcpSocket) => {
  const record: Served = { tls: socket.tls, lines: [], end: undefined }
  served.push(record)
  return Effect.gen(function*() {
    while (true) {
      const line = str(yield* socket.recvUntil("\n", { max: 1024, ...T }))
      record.lines.push(line)
      yield* socket.send(text(`${line}\n`), T)
    }
  }).pipe(
    Effect.tapError((error) =>
      Effect.sync(() => {
        record.end = error._tag
      })
    ),
    Effect.catchTag("PeerClosed", () => Effect.void)
  )
}

type Tcp = TcpClient.TcpClient | TcpStorage.TcpStorage

interface Serving {
  readonly listener: TcpListener.TcpListener<TcpError.TlsError>
  readonly served: ReadonlyArray<Served>
  readonly serving: Fiber.Fiber<void, TcpError.InvalidArgument>
  readonly handshakesFailed: () => number
}

/**
 * Listens on a free loopback port with TLS, presenting the localhost
 * certificate of `certs` (and `tls` added), and serves `echoLines` there
 * until the scope ends.
 */
const serveEcho = (
  certs: TestCertificates,
  tls: Partial<TcpTls.ServerOptions> = {}
): Effect.Effect<Serving, TcpError.ListenError, Tcp | Scope.Scope> =>
  Effect.gen(function*() {
    const listener = yield* TcpListener.listen("127.0.0.1:0", {
      tls: { cert: certs.server.cert, key: certs.server.key, ...tls }
    })
    const served: Array<Served> = []
    const serving = yield* Effect.forkScoped(TcpListener.serve(listener, echoLines(served)))
    return { listener, served, serving, handshakesFailed: () => handshakesFailed(listener) }
  })

/** What `serveEcho` adds to require a client certificate the CA of `certs` signed. */
const clientCertificateRequired = (certs: TestCertificates) => ({ ca: certs.ca.cert, requestCert: true })

/** `openssl s_client` to `port`, trusting the CA of `certs`, presenting `certificate` when given. */
const sClient = (port: number, certs: TestCertificates, certificate?: CertificateFiles) =>
  opensslClient(opensslBinary(), {
    port,
    caFile: certs.ca.certFile,
    ...(certificate === undefined ? {} : { certFile: certificate.certFile, keyFile: certificate.keyFile })
  })

/** Runs `body` with fresh certificates; every storage slot must be back afterwards. */
const withCerts = <A, E>(body: (certs: TestCertificates) => Effect.Effect<A, E, Tcp | Scope.Scope>) =>
  withTcp(Effect.flatMap(makeCertificates(opensslBinary()), body))

/**
 * Waits until a plain node:net socket learns its connection was cut (FIN,
 * reset or close), returning what it had received and how it ended.
 */
const cutOff = (socket: Net.Socket): Effect.Effect<{ readonly how: string; readonly received: Buffer }> =>
  Effect.callback((resume) => {
    const chunks: Array<Buffer> = []
    const onData = (chunk: Buffer) => chunks.push(chunk)
    const finish = (how: string) => () => {
      cleanup()
      resume(Effect.succeed({ how, received: Buffer.concat(chunks) }))
    }
    const onEnd = finish("end")
    const onError = finish("error")
    const onClose = finish("close")
    const cleanup = () => {
      socket.off("data", onData)
      socket.off("end", onEnd)
      socket.off("error", onError)
      socket.off("close", onClose)
    }
    socket.on("data", onData)
    socket.once("end", onEnd)
    socket.once("error", onError)
    socket.once("close", onClose)
    return Effect.sync(cleanup)
  })

describe.skipIf(openssl === undefined)("tls interop: openssl s_client against the library's TLS listener", () => {
  checkFdLeaks()

  it.live("s_client verifies the listener, its lines are echoed, and its close_notify ends the handler with PeerClosed", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const { listener, served } = yield* serveEcho(certs)
        const client = yield* sClient(listener.port, certs)
        yield* client.waitForHandshake()
        assert.include(client.stderr(), "Verification: OK")
        assert.match(client.stderr(), /Protocol version: TLSv1\.[23]/)
        // Q and R lines are data for s_client here, not commands.
        const lines = "hello\nQuit\nR\n" + "x".repeat(900) + "\n"
        yield* client.send(lines)
        assert.strictEqual(yield* client.waitForOutput((out) => out.length >= lines.length), lines)
        const connection = served[0] ?? assert.fail("the handler saw no connection")
        assert.deepStrictEqual(connection.lines, ["hello", "Quit", "R", "x".repeat(900)])
        assert.isTrue(connection.tls !== undefined && /^TLSv1\.[23]$/.test(connection.tls.protocol ?? ""))
        assert.isFalse(connection.tls?.authorized, "the listener asked for no client certificate")
        assert.isUndefined(connection.end, "the handler still waits for a line")

        // Closing its stdin makes s_client send close_notify, then close.
        yield* client.end
        yield* eventually(() => connection.end !== undefined, "the handler saw the client's end")
        assert.strictEqual(connection.end, "PeerClosed")
        const exit = yield* client.exit()
        assert.strictEqual(exit.code, 0, exit.stderr)
        assert.strictEqual(served.length, 1)
      })
    ))

  it.live("a plaintext client is cut off and counted; the listener goes on serving s_client", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const { handshakesFailed, listener, served, serving } = yield* serveEcho(certs)
        assert.strictEqual(handshakesFailed(), 0)
        const plain = yield* rawClient(listener.port)
        // The second write may meet the listener's reset: that is the cut-off, not a test error.
        plain.on("error", () => {})
        const cut = cutOff(plain)
        plain.write("hello\n")
        plain.write(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x00, 0x01, 0x02, 0x03]))
        const { received } = yield* cut
        assert.notInclude(received.toString("latin1"), "hello", "the plaintext was never echoed")
        yield* eventually(() => handshakesFailed() >= 1, "the listener counted the failed handshake")
        assert.isUndefined(serving.pollUnsafe(), "serve is still running")

        const client = yield* sClient(listener.port, certs)
        yield* client.send("after plaintext\n")
        assert.strictEqual(yield* client.waitForOutput("after plaintext\n"), "after plaintext\n")
        yield* client.end
        assert.strictEqual((yield* client.exit()).code, 0)
        // The handler saw s_client only, never the plaintext client.
        assert.deepStrictEqual(served.map((s) => s.lines), [["after plaintext"]])
        assert.strictEqual(handshakesFailed(), 1)
      })
    ))

  it.live("requestCert: s_client without a client certificate is refused and never reaches the handler", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const { handshakesFailed, listener, served, serving } = yield* serveEcho(certs, clientCertificateRequired(certs))
        // TLS 1.3: s_client's side of the handshake completes, then the listener's alert ends it.
        const anonymous = yield* sClient(listener.port, certs)
        const refused = yield* anonymous.exit()
        assert.notStrictEqual(refused.code, 0, refused.stderr)
        assert.strictEqual(refused.stdout, "")
        assert.match(refused.stderr, /certificate required/i)
        yield* eventually(() => handshakesFailed() >= 1, "the listener counted the refused handshake")
        assert.strictEqual(handshakesFailed(), 1)
        assert.deepStrictEqual(served, [], "the refused client never reached the handler")
        assert.isUndefined(serving.pollUnsafe(), "serve is still running")
      })
    ))

  it.live("requestCert: s_client with the client certificate is served, and the handler sees it authorized", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const { listener, served } = yield* serveEcho(certs, clientCertificateRequired(certs))
        const withCert = yield* sClient(listener.port, certs, certs.client)
        yield* withCert.send("mutual\n")
        assert.strictEqual(yield* withCert.waitForOutput("mutual\n"), "mutual\n")
        const connection = served[0] ?? assert.fail("the handler saw no connection")
        assert.isTrue(connection.tls?.authorized, `authorizationError: ${connection.tls?.authorizationError}`)
        assert.isUndefined(connection.tls?.authorizationError)
        assert.strictEqual(connection.tls?.peerCertificate?.subject.CN, "effect-tcp-test-client")
        yield* withCert.end
        assert.strictEqual((yield* withCert.exit()).code, 0)
      })
    ))

  it.live("requestCert: s_client with a certificate the CA did not sign is refused and never reaches the handler", () =>
    withCerts((certs) =>
      Effect.gen(function*() {
        const { handshakesFailed, listener, served } = yield* serveEcho(certs, clientCertificateRequired(certs))
        const rogue = yield* sClient(listener.port, certs, certs.selfSigned)
        yield* rogue.send("secret\n")
        const refused = yield* rogue.exit()
        assert.notStrictEqual(refused.code, 0, refused.stderr)
        assert.strictEqual(refused.stdout, "", "nothing was echoed to the untrusted client")
        yield* eventually(() => handshakesFailed() >= 1, "the listener counted the refused handshake")
        assert.deepStrictEqual(served, [], "the untrusted client never reached the handler")
      })
    ))
})
