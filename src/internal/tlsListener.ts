/**
 * A TLS listener: a plaintext listener (Node's or the in-memory one) whose
 * connections are upgraded as servers before anyone sees them (libdill's
 * `tls_attach_server` on each accepted socket). `accept` runs the
 * handshake within its own deadline; `serve` runs it in the connection's
 * own fiber within `handshakeTimeout`, so a client that stalls holds up
 * nobody but itself.
 */
import { Duration, Effect, Inspectable, Metric } from "effect"
import type { Scope } from "effect"
import { NetAddress } from "effect/net"
import { pipeArguments } from "effect/Pipeable"
import * as Deadline from "../Deadline.ts"
import * as TcpError from "../TcpError.ts"
import * as TcpMetrics from "../TcpMetrics.ts"
import type { TcpSocket } from "../TcpSocket.ts"
import type { ServerOptions } from "./tlsTypes.ts"
import { reportedAs, upgradeSocket } from "./tls.ts"

/** `TcpListener.TypeId`, repeated here so this module does not import the one that imports it. */
const ListenerTypeId = "~effect-tcp/TcpListener" as const

/** Each TLS handshake `serve` runs is bounded by this unless the options say otherwise. */
export const defaultHandshakeTimeout: Duration.Duration = Duration.seconds(10)

/**
 * What a TLS listener needs of the plaintext one beneath it
 * (`TcpListener.TcpListener`, matched by shape: that module imports this one).
 */
export interface PlainListener<Options extends Deadline.Options> {
  readonly address: NetAddress.InetAddress
  readonly port: number
  readonly close: Effect.Effect<void>
  accept(options?: Options): Effect.Effect<TcpSocket, TcpError.AcceptError, Scope.Scope>
  toJSON(): unknown
}

/** A `TcpListener<TlsError>` (`TcpListener.listen` with `tls`): the plaintext listener beneath, and the handshake. */
export class TlsListener<Options extends Deadline.Options> extends Inspectable.Class {
  readonly [ListenerTypeId] = ListenerTypeId
  readonly plain: PlainListener<Options>
  readonly options: ServerOptions
  readonly handshakeTimeout: Duration.Duration
  /** Handshakes that failed or stalled: those connections were closed. */
  handshakesFailed = 0

  constructor(plain: PlainListener<Options>, options: ServerOptions, handshakeTimeout: Duration.Duration) {
    super()
    this.plain = plain
    this.options = options
    this.handshakeTimeout = handshakeTimeout
  }

  get address(): NetAddress.InetAddress {
    return this.plain.address
  }

  get port(): number {
    return this.plain.port
  }

  get close(): Effect.Effect<void> {
    return this.plain.close
  }

  /** A plaintext connection, then its handshake, within the one deadline. */
  accept(options?: Options): Effect.Effect<TcpSocket, TcpError.AcceptError | TcpError.TlsError, Scope.Scope> {
    return Effect.gen({ self: this }, function*() {
      const deadline = yield* Deadline.resolve(options, "accept", this.text)
      // The one deadline, resolved now, bounds the accept and the handshake together.
      const plain = yield* this.plain.accept({ ...options, deadline, timeout: undefined } as Options)
      return yield* this.secure(plain, deadline)
    })
  }

  /** The server side of the handshake on an accepted socket; a failure closes it and is counted. */
  secure(
    plain: TcpSocket,
    deadline: Deadline.Deadline
  ): Effect.Effect<TcpSocket, TcpError.AcceptError | TcpError.TlsError, Scope.Scope> {
    return upgradeSocket(plain, "server", this.options, deadline, "accept").pipe(
      Effect.tapError((error) =>
        Effect.andThen(
          plain.abort,
          Effect.flatMap(Effect.service(TcpMetrics.Enabled), (enabled) => {
            this.handshakesFailed++
            return enabled
              ? Metric.update(
                Metric.withAttributes(TcpMetrics.connectionsFailed, { tag: error._tag, direction: "accept" }),
                1
              )
              : Effect.void
          })
        )
      ),
      Effect.mapError(reportedAs(TcpError.acceptTags))
    )
  }

  get text(): string {
    return NetAddress.formatInet(this.plain.address)
  }

  toJSON() {
    return { _id: "TcpListener", tls: true, handshakesFailed: this.handshakesFailed, listener: this.plain.toJSON() }
  }

  pipe() {
    return pipeArguments(this, arguments)
  }
}
