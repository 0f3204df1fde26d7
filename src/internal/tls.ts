/**
 * Upgrades a connection to TLS on whichever transport it runs: Node's
 * (`node/tls.ts`, OpenSSL) or the in-memory one (`memory/tls.ts`, no
 * crypto). Shared by `TcpClient.connect({ tls })`, TLS listeners and
 * `TcpTls.client` / `TcpTls.server`.
 */
import { Effect, Result } from "effect"
import type { Scope } from "effect"
import type { Deadline } from "../Deadline.ts"
import * as TcpError from "../TcpError.ts"
import type { ClientOptions, ServerOptions, UpgradeError } from "./tlsTypes.ts"
import { nodeHost } from "./address.ts"
import type { Connection } from "./core/connection.ts"
import { upgrade as memoryUpgrade } from "./memory/tls.ts"
import { Side } from "./memory/transport.ts"
import { prepareOnce, type Prepared, upgrade as nodeUpgrade } from "./node/tls.ts"
import { NodeTransport } from "./node/transport.ts"
import { attach, TcpSocketImpl } from "./tcpSocket.ts"

export { prepareOnce, type Prepared }

/**
 * An upgrade's error as a call documenting `tags` reports it: a TLS error
 * as it is, any other narrowed to the call's tags (a connect's, an accept's).
 */
export const reportedAs = <T extends TcpError.Tag>(tags: ReadonlySet<T>) =>
(
  error: UpgradeError
): TcpError.TlsError | Extract<TcpError.TcpError, { readonly _tag: T }> | TcpError.SystemError =>
  error._tag === "TlsHandshakeFailed" || error._tag === "CertificateRejected" ? error : TcpError.narrow(error, tags)

/** `conn` upgraded as `role` within `deadline`, on its own transport. */
export const upgradeConnection = (
  conn: Connection,
  role: "client" | "server",
  options: Prepared,
  host: string | undefined,
  deadline: Deadline,
  syscall: string
): Effect.Effect<Connection, UpgradeError> => {
  const transport = conn.transport
  if (transport instanceof NodeTransport) {
    return nodeUpgrade(conn as Connection<NodeTransport>, role, options, host, deadline, syscall)
  }
  if (transport instanceof Side) return memoryUpgrade(conn as Connection<Side>, role, options, syscall)
  return Effect.fail(TcpError.invalid(syscall, "this connection's transport cannot carry TLS", conn.address))
}

/**
 * `TcpTls.client` / `TcpTls.server`: the socket's connection upgraded and
 * given to the current scope as a new socket; the old one is closed.
 */
export const upgradeSocket = (
  socket: unknown,
  role: "client" | "server",
  options: ClientOptions | ServerOptions,
  deadline: Deadline,
  syscall: string
): Effect.Effect<TcpSocketImpl, UpgradeError, Scope.Scope> =>
  Effect.suspend(() => {
    if (!(socket instanceof TcpSocketImpl)) {
      return Effect.fail(TcpError.invalid(syscall, "expected a TcpSocket made by this library"))
    }
    const conn = socket.conn
    const prepared = prepareOnce(options, role, syscall, conn.address, conn.transport instanceof NodeTransport)
    if (Result.isFailure(prepared)) return Effect.fail(prepared.failure)
    const host = hostOf(conn)
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        restore(upgradeConnection(conn, role, prepared.success, host, deadline, syscall)),
        (upgraded) => attach(upgraded, socket.closeTimeout, socket.pool)
      )
    )
  })

/** The peer's address without its port: what a client's certificate check names when no `serverName` is given. */
const hostOf = (conn: Connection): string | undefined => {
  const remote = conn.transport.remoteInet
  return remote === undefined ? undefined : nodeHost(remote)
}
