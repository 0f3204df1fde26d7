/**
 * TLS: libdill's `tls_attach_client` / `tls_attach_server`. Connect with
 * `TcpClient.connect(address, { tls })`, listen with
 * `TcpListener.listen(address, { tls })`, or upgrade a plaintext socket in
 * use (STARTTLS, Postgres' SSLRequest) with `TcpTls.client` /
 * `TcpTls.server`. Plaintext lands in the socket's storage slot like TCP
 * bytes: exact receives, `recvUntil`, messages, deadlines, `done`
 * (close_notify, then FIN), `close` and `abort` keep their rules.
 *
 * @since 0.1.0
 */
import { Effect, Function as Fn } from "effect"
import type { Scope } from "effect"
import * as Deadline from "./Deadline.ts"
import { upgradeSocket } from "./internal/tls.ts"
import type * as Types from "./internal/tlsTypes.ts"
import type { TcpSocket } from "./TcpSocket.ts"

/**
 * Certificates and keys: PEM text or bytes, or a list of them.
 *
 * @example
 * ```ts
 * import type { TcpTls } from "effect-tcp"
 * import { readFileSync } from "node:fs"
 * const ca: TcpTls.Pem = readFileSync("ca.pem", "utf8")
 * ```
 * @since 0.1.0
 */
export type Pem = Types.Pem

/**
 * A client's TLS settings. `serverName` (SNI, and the name the server's
 * certificate must carry) defaults to the host name connected to; an IP
 * address is checked against the certificate's IP entries and sent as no
 * SNI. `ca` replaces Node's bundled roots; `cert` and `key` are the
 * client's certificate; `rejectUnauthorized` (default `true`) fails a
 * certificate that does not verify with `CertificateRejected`.
 *
 * @example
 * ```ts
 * import type { TcpTls } from "effect-tcp"
 * const options: TcpTls.ClientOptions = { serverName: "redis.internal", alpn: ["redis"] }
 * ```
 * @since 0.1.0
 */
export interface ClientOptions extends Types.ClientOptions {}

/**
 * A server's TLS settings: its `cert` and `key`; with `requestCert` it asks
 * clients for a certificate, verified against `ca` (a client without a
 * valid one is refused unless `rejectUnauthorized` is `false`).
 * `handshakeTimeout` (default 10 seconds) bounds each handshake `serve`
 * runs before a handler sees the connection.
 *
 * @example
 * ```ts
 * import type { TcpTls } from "effect-tcp"
 * declare const cert: string, key: string
 * const options: TcpTls.ServerOptions = { cert, key, alpn: ["http/1.1"] }
 * ```
 * @since 0.1.0
 */
export interface ServerOptions extends Types.ServerOptions {}

/**
 * What `socket.tls` shows of a TLS connection: the protocol version, the
 * cipher, the ALPN protocol agreed, whether the peer's certificate
 * verified (and why not), and that certificate. Under `TcpTest.layer` the
 * protocol and cipher are nominal and there is no certificate.
 *
 * @example
 * ```ts
 * import type { TcpTls } from "effect-tcp"
 * const secure = (info: TcpTls.Info | undefined) => info?.authorized === true
 * ```
 * @since 0.1.0
 */
export interface Info extends Types.Info {}

/**
 * What an upgrade can fail with: a TLS error, or the socket not being in a
 * state to upgrade (`Closed`, `InvalidArgument` while a call is under way
 * or for options that do not parse, `ConnReset` when the peer finished),
 * `TimedOut`, or `SystemError`. A handshake that began and failed closes
 * the connection; an upgrade refused before it began leaves the plaintext
 * socket as it was.
 *
 * @example
 * ```ts
 * import type { TcpTls } from "effect-tcp"
 * const retry = (e: TcpTls.UpgradeError) => e._tag === "TimedOut"
 * ```
 * @since 0.1.0
 */
export type UpgradeError = Types.UpgradeError

/**
 * The options of an upgrade: TLS settings plus a deadline or timeout for
 * the handshake.
 *
 * @example
 * ```ts
 * import type { TcpTls } from "effect-tcp"
 * const options: TcpTls.ClientUpgradeOptions = { serverName: "mail.example", timeout: "5 seconds" }
 * ```
 * @since 0.1.0
 */
export interface ClientUpgradeOptions extends ClientOptions, Deadline.Options {}

/**
 * The options of a server-side upgrade: TLS settings plus a deadline or
 * timeout for the handshake.
 *
 * @example
 * ```ts
 * import type { TcpTls } from "effect-tcp"
 * declare const cert: string, key: string
 * const options: TcpTls.ServerUpgradeOptions = { cert, key, timeout: "5 seconds" }
 * ```
 * @since 0.1.0
 */
export interface ServerUpgradeOptions extends ServerOptions, Deadline.Options {}

const isSocketFirst = (args: IArguments) => typeof args[0] === "object" && args[0] !== null && "recvUntil" in args[0]

/**
 * Upgrades an open plaintext socket to TLS as the client (STARTTLS):
 * between calls (none under way), the handshake completes within the
 * deadline. The returned socket lives in the current scope and owns the
 * connection; the plaintext socket fails `Closed` from then on. Bytes that
 * arrived before the upgrade and were not read go to the handshake, as
 * libdill's TLS reads through the socket's buffer.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpTls } from "effect-tcp"
 * const starttls = Effect.gen(function*() {
 *   const plain = yield* TcpClient.connect("localhost:5025", { timeout: "2 seconds" })
 *   yield* plain.send(new TextEncoder().encode("STARTTLS\r\n"))
 *   yield* plain.recvUntil("\r\n", { timeout: "2 seconds" }) // "OK"
 *   return yield* TcpTls.client(plain, { serverName: "localhost", timeout: "2 seconds" })
 * })
 * ```
 * @since 0.1.0
 */
export const client: {
  (options?: ClientUpgradeOptions): (socket: TcpSocket) => Effect.Effect<TcpSocket, UpgradeError, Scope.Scope>
  (socket: TcpSocket, options?: ClientUpgradeOptions): Effect.Effect<TcpSocket, UpgradeError, Scope.Scope>
} = Fn.dual(
  isSocketFirst,
  Effect.fn("TcpTls.client")(function*(socket: TcpSocket, options?: ClientUpgradeOptions) {
    const deadline = yield* Deadline.resolve(options, "tls")
    return yield* upgradeSocket(socket, "client", options ?? {}, deadline, "tls")
  })
)

/**
 * Upgrades an open plaintext socket to TLS as the server (the answer to
 * STARTTLS or an SSLRequest), with the same rules as `client`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpTls } from "effect-tcp"
 * import type { TcpSocket } from "effect-tcp"
 * declare const plain: TcpSocket.TcpSocket
 * declare const cert: string, key: string
 * const secure = Effect.gen(function*() {
 *   yield* plain.send(new TextEncoder().encode("OK\r\n"))
 *   return yield* TcpTls.server(plain, { cert, key, timeout: "5 seconds" })
 * })
 * ```
 * @since 0.1.0
 */
export const server: {
  (options: ServerUpgradeOptions): (socket: TcpSocket) => Effect.Effect<TcpSocket, UpgradeError, Scope.Scope>
  (socket: TcpSocket, options: ServerUpgradeOptions): Effect.Effect<TcpSocket, UpgradeError, Scope.Scope>
} = Fn.dual(
  2,
  Effect.fn("TcpTls.server")(function*(socket: TcpSocket, options: ServerUpgradeOptions) {
    const deadline = yield* Deadline.resolve(options, "tls")
    return yield* upgradeSocket(socket, "server", options, deadline, "tls")
  })
)
