/**
 * TLS in memory: no crypto, the same rules. A connection hands its end
 * over to a new one as on Node, which then reads what was unread first;
 * the handshake fails only where a test injected a failure
 * (`TcpTest.failTls`).
 */
import { Effect, Result } from "effect"
import type { UpgradeError } from "../tlsTypes.ts"
import type { Connection } from "../core/connection.ts"
import type { Prepared } from "../node/tls.ts"
import type { Side } from "./transport.ts"

/** `conn` upgraded as `role`: what `socket.tls` shows, unless a test made the handshake fail. */
export const upgrade = (
  conn: Connection<Side>,
  role: "client" | "server",
  options: Prepared,
  syscall: string
): Effect.Effect<Connection, UpgradeError> =>
  Effect.suspend((): Effect.Effect<Connection, UpgradeError> => {
    const injected = conn.transport.handshakeFailure?.(role, syscall)
    const handover = conn.handOver(syscall)
    if (Result.isFailure(handover)) return Effect.fail(handover.failure)
    const { leftover, takeOver, transport } = handover.success
    const upgraded = takeOver((events) =>
      transport.adopt(events, leftover, {
        protocol: "TLSv1.3",
        cipher: "TLS_AES_128_GCM_SHA256",
        alpnProtocol: options.alpn?.[0],
        authorized: true,
        authorizationError: undefined,
        peerCertificate: undefined
      }))
    transport.conn = upgraded
    transport.resumeReading()
    return injected === undefined ? Effect.succeed(upgraded) : Effect.andThen(upgraded.abort, Effect.fail(injected))
  })
