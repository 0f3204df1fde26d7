/**
 * Raw node:tls peers for the TLS tests: a server (echo or custom) on a
 * loopback port, and a client that reports how its handshake ended, with
 * Node's own error codes. What the library's TLS is compared against.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Net from "node:net"
import * as Tls from "node:tls"

/** A listening node:tls server and what it saw. */
export interface RawTlsServer {
  readonly port: number
  /** `127.0.0.1:port` (or `[::1]:port`). */
  readonly address: string
  readonly server: Tls.Server
  /** Every connection whose handshake completed, in order. */
  readonly peers: ReadonlyArray<Tls.TLSSocket>
  /** Every handshake that failed on the server's side (`tlsClientError`), in order. */
  readonly handshakeErrors: ReadonlyArray<Error & { readonly code?: string }>
}

/**
 * A node:tls server on `host` (127.0.0.1 unless told), port 0, with
 * `allowHalfOpen` and `options` (cert, key, ca, requestCert, ALPN…); each
 * connection whose handshake completes goes to `onConnection`. Closed with
 * the scope, its connections destroyed.
 *
 * @example
 * ```ts
 * const server = yield* rawTlsServer({ cert: certs.server.cert, key: certs.server.key }, (socket) => socket.end("hi"))
 * ```
 */
export const rawTlsServer = (
  options: Tls.TlsOptions,
  onConnection: (socket: Tls.TLSSocket) => void,
  host = "127.0.0.1"
): Effect.Effect<RawTlsServer, never, Scope.Scope> =>
  Effect.suspend(() => {
    const peers: Array<Tls.TLSSocket> = []
    const handshakeErrors: Array<Error & { readonly code?: string }> = []
    const sockets = new Set<Net.Socket>()
    return Effect.acquireRelease(
      Effect.callback<Tls.Server>((resume) => {
        const server = Tls.createServer({ allowHalfOpen: true, ...options }, (socket) => {
          peers.push(socket)
          socket.on("error", () => {})
          onConnection(socket)
        })
        // Track the TCP connections, not only the handshaken ones, so the scope destroys stalled handshakes too.
        server.on("connection", (socket: Net.Socket) => {
          sockets.add(socket)
          socket.on("close", () => sockets.delete(socket))
        })
        server.on("tlsClientError", (error) => handshakeErrors.push(error))
        server.listen(0, host, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.callback<void>((resume) => {
          server.close(() => resume(Effect.void))
          for (const socket of sockets) socket.destroy()
          for (const socket of peers) socket.destroy()
        })
    ).pipe(
      Effect.map((server) => {
        const bound = server.address() as Net.AddressInfo
        const literal = Net.isIPv6(host) ? `[${host}]` : host
        return { port: bound.port, address: `${literal}:${bound.port}`, server, peers, handshakeErrors }
      })
    )
  })

/**
 * A node:tls echo server (see `rawTlsServer`): each peer gets back what it
 * sends, and is finished when it finishes.
 *
 * @example
 * ```ts
 * const echo = yield* tlsEchoServer({ cert: certs.server.cert, key: certs.server.key })
 * ```
 */
export const tlsEchoServer = (
  options: Tls.TlsOptions,
  host?: string
): Effect.Effect<RawTlsServer, never, Scope.Scope> =>
  rawTlsServer(options, (socket) => {
    socket.on("data", (chunk: Buffer) => socket.write(chunk))
    socket.on("end", () => socket.end())
  }, host)

/** How a node:tls client's handshake ended. */
export type HandshakeOutcome =
  | {
    readonly _tag: "Connected"
    readonly authorized: boolean
    /** Why it is not authorized (with `rejectUnauthorized: false`), as Node's code. */
    readonly authorizationError: string | undefined
    readonly protocol: string | null
    readonly alpnProtocol: string | false | null
  }
  | {
    readonly _tag: "Failed"
    /** Node's `error.code` (e.g. "DEPTH_ZERO_SELF_SIGNED_CERT", "ERR_TLS_CERT_ALTNAME_INVALID"). */
    readonly code: string | undefined
    readonly message: string
  }

/**
 * Connects a node:tls client with `options` (port, host, servername, ca,
 * rejectUnauthorized…), waits until the handshake completes or fails, and
 * says how; the socket is destroyed either way. Gives up (as a failure with
 * code "TEST_TIMEOUT") after 10 s.
 *
 * @example
 * ```ts
 * const outcome = yield* tlsHandshake({ port, host: "127.0.0.1", servername: "localhost" })
 * assert.deepInclude(outcome, { _tag: "Failed", code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" })
 * ```
 */
export const tlsHandshake = (options: Tls.ConnectionOptions): Effect.Effect<HandshakeOutcome> =>
  Effect.callback<HandshakeOutcome>((resume) => {
    let settled = false
    const socket = Tls.connect(options)
    const settle = (outcome: HandshakeOutcome) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed(outcome))
    }
    const timer = setTimeout(
      () => settle({ _tag: "Failed", code: "TEST_TIMEOUT", message: "no handshake outcome within 10 s" }),
      10_000
    )
    socket.once("secureConnect", () => {
      const reason = socket.authorizationError as unknown
      settle({
        _tag: "Connected",
        authorized: socket.authorized,
        authorizationError: reason === undefined || reason === null ?
          undefined :
          typeof reason === "string" ?
          reason :
          String((reason as { code?: unknown }).code ?? reason),
        protocol: socket.getProtocol(),
        alpnProtocol: socket.alpnProtocol
      })
    })
    socket.once("error", (error: Error & { code?: string }) =>
      settle({ _tag: "Failed", code: error.code, message: error.message }))
    socket.once("close", () => settle({ _tag: "Failed", code: undefined, message: "closed before the handshake" }))
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })
