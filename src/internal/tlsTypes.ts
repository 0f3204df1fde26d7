/**
 * The shapes TLS settings and sessions have, for the library's own modules;
 * `TcpTls` documents them for users (its interfaces extend these), so
 * internal code never imports a public module that imports it.
 */
import type { Duration } from "effect"
import type { PeerCertificate } from "node:tls"
import type * as TcpError from "../TcpError.ts"

export type Pem = string | Uint8Array | ReadonlyArray<string | Uint8Array>

export interface ClientOptions {
  readonly serverName?: string | undefined
  readonly ca?: Pem | undefined
  readonly cert?: Pem | undefined
  readonly key?: Pem | undefined
  readonly rejectUnauthorized?: boolean | undefined
  readonly alpn?: ReadonlyArray<string> | undefined
}

export interface ServerOptions {
  readonly cert: Pem
  readonly key: Pem
  readonly ca?: Pem | undefined
  readonly requestCert?: boolean | undefined
  readonly rejectUnauthorized?: boolean | undefined
  readonly alpn?: ReadonlyArray<string> | undefined
  readonly handshakeTimeout?: Duration.Input | undefined
}

export interface Info {
  readonly protocol: string | undefined
  readonly cipher: string | undefined
  readonly alpnProtocol: string | undefined
  readonly authorized: boolean
  readonly authorizationError: string | undefined
  readonly peerCertificate: PeerCertificate | undefined
}

export type UpgradeError = TcpError.TlsError | TcpError.CloseError
