/**
 * TLS over the Node transport: libdill's `tls_attach_client` /
 * `tls_attach_server`. The plaintext connection hands its socket, its slot
 * and the bytes it had not read to a new connection whose transport is a
 * `tls.TLSSocket` over that socket; the handshake runs within the caller's
 * deadline. Plaintext lands in the same slot, copied from the TLS socket's
 * chunks: OpenSSL decrypts into memory of its own, so there is no `onread`
 * path to read into.
 */
import { Effect, Result } from "effect"
import { X509Certificate } from "node:crypto"
import * as Tls from "node:tls"
import type { Deadline } from "../../Deadline.ts"
import * as TcpError from "../../TcpError.ts"
import type { ClientOptions, ServerOptions, UpgradeError } from "../tlsTypes.ts"
import type { Connection } from "../core/connection.ts"
import { awaitEvent } from "../wait.ts"
import { NodeTransport } from "./transport.ts"

/** What Node/OpenSSL call a certificate that failed verification, beyond OpenSSL's X509 codes. */
const certificateCodes: ReadonlySet<string> = new Set([
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "ERR_TLS_CERT_ALTNAME_FORMAT"
])

/**
 * OpenSSL's X509 verification codes are upper-case words joined by `_`
 * without Node's `ERR_` prefix (`CERT_HAS_EXPIRED`); errnos have no `_`
 * (`ECONNRESET`), Node's own codes start with `ERR_` (`ERR_SSL_...`).
 */
const isVerificationCode = (code: string): boolean =>
  certificateCodes.has(code) || (/^[A-Z0-9]+(_[A-Z0-9]+)+$/.test(code) && !code.startsWith("ERR_"))

/** The TLS error for what failed a handshake. */
export const handshakeError = (cause: unknown, syscall: string, address: string | undefined): TcpError.TlsError => {
  const code: unknown = Reflect.get(Object(cause), "code")
  const reason = typeof code === "string" && code.length > 0
    ? code
    : cause instanceof Error ? cause.message : "the handshake failed"
  const detail = cause instanceof Error ? cause.message : undefined
  return isVerificationCode(reason)
    ? TcpError.make({ tag: "CertificateRejected", syscall, address, reason, detail })
    : TcpError.make({ tag: "TlsHandshakeFailed", syscall, address, reason, detail })
}

type Pem = string | Uint8Array | ReadonlyArray<string | Uint8Array>

const isPem = (u: unknown): u is Pem =>
  typeof u === "string" || u instanceof Uint8Array ||
  (Array.isArray(u) && u.every((item) => typeof item === "string" || item instanceof Uint8Array))

const toNode = (pem: Pem | undefined): string | Buffer | Array<string | Buffer> | undefined => {
  if (pem === undefined) return undefined
  const one = (item: string | Uint8Array) => typeof item === "string" ? item : Buffer.from(item)
  return typeof pem === "string" || pem instanceof Uint8Array ? one(pem) : pem.map(one)
}

const certificatePem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/**
 * Why `ca` cannot be trusted as given, if it cannot: OpenSSL skips what it
 * cannot parse in a CA list without a word, and every peer would then be
 * rejected for a reason that hides the mistake.
 */
const badCa = (ca: Pem): string | undefined => {
  const items = typeof ca === "string" || ca instanceof Uint8Array ? [ca] : ca
  for (const item of items) {
    const text = typeof item === "string" ? item : Buffer.from(item).toString("latin1")
    const certificates = text.match(certificatePem)
    if (certificates === null) return "ca holds no PEM certificate"
    for (const pem of certificates) {
      try {
        new X509Certificate(pem)
      } catch (cause) {
        return `ca holds a certificate that does not parse: ${cause instanceof Error ? cause.message : String(cause)}`
      }
    }
  }
  return undefined
}

const isAlpn = (u: unknown): u is ReadonlyArray<string> =>
  Array.isArray(u) && u.every((p) => typeof p === "string" && p.length > 0 && p.length < 256)

/** Options checked once, with their secure context made (certificates parsed) once. */
export interface Prepared {
  /** `undefined` in memory, where there is no crypto and certificates are not parsed. */
  readonly context: Tls.SecureContext | undefined
  readonly rejectUnauthorized: boolean
  readonly requestCert: boolean
  readonly alpn: Array<string> | undefined
  readonly serverName: string | undefined
}

const prepare = (
  options: ClientOptions | ServerOptions,
  role: "client" | "server",
  syscall: string,
  address: string | undefined,
  crypto: boolean
): Result.Result<Prepared, TcpError.InvalidArgument> => {
  const bad = (detail: string) => Result.fail(TcpError.invalid(syscall, `tls: ${detail}`, address))
  if (typeof options !== "object" || options === null) return bad("options must be an object")
  const { alpn, ca, cert, key, rejectUnauthorized } = options
  for (const [name, value] of [["ca", ca], ["cert", cert], ["key", key]] as const) {
    if (value !== undefined && !isPem(value)) return bad(`${name} must be PEM text or bytes, or a list of them`)
  }
  if (role === "server" && (cert === undefined || key === undefined)) return bad("a server needs cert and key")
  const caProblem = crypto && ca !== undefined ? badCa(ca) : undefined
  if (caProblem !== undefined) return bad(caProblem)
  if ((cert === undefined) !== (key === undefined)) return bad("cert and key go together")
  if (rejectUnauthorized !== undefined && typeof rejectUnauthorized !== "boolean") {
    return bad("rejectUnauthorized must be a boolean")
  }
  if (alpn !== undefined && !isAlpn(alpn)) return bad("alpn must be a list of protocol names (1 to 255 characters)")
  const requestCert = "requestCert" in options ? options.requestCert : undefined
  if (requestCert !== undefined && typeof requestCert !== "boolean") return bad("requestCert must be a boolean")
  const serverName = "serverName" in options ? options.serverName : undefined
  if (serverName !== undefined && (typeof serverName !== "string" || serverName.length === 0)) {
    return bad("serverName must be a non-empty string")
  }
  try {
    const context = crypto ? Tls.createSecureContext({ ca: toNode(ca), cert: toNode(cert), key: toNode(key) }) : undefined
    return Result.succeed({
      context,
      rejectUnauthorized: rejectUnauthorized ?? true,
      requestCert: requestCert ?? false,
      alpn: alpn === undefined ? undefined : [...alpn],
      serverName
    })
  } catch (cause) {
    return bad(cause instanceof Error ? cause.message : "the certificates or key could not be read")
  }
}

// A pool or a loop that connects with the same options parses their certificates once.
const prepared = new WeakMap<object, Prepared>()

/**
 * `options` checked, and their secure context made (with `crypto`; not in
 * memory), once per options object.
 */
export const prepareOnce = (
  options: ClientOptions | ServerOptions,
  role: "client" | "server",
  syscall: string,
  address: string | undefined,
  crypto = true
): Result.Result<Prepared, TcpError.InvalidArgument> => {
  if (!crypto) return prepare(options, role, syscall, address, false)
  const known = typeof options === "object" && options !== null ? prepared.get(options) : undefined
  if (known !== undefined) return Result.succeed(known)
  const result = prepare(options, role, syscall, address, true)
  if (Result.isSuccess(result)) prepared.set(options, result.success)
  return result
}

/**
 * The client certificate check a `tls.Server` makes on each connection
 * (Node's `onServerSocketSecure`), which a server-side `TLSSocket` made on
 * its own does not: OpenSSL lets the handshake finish whatever the
 * verification found, and leaves the verdict to be read. Sets `authorized`
 * or `authorizationError` as Node would, and returns why the client is
 * refused, if it is. Without the handle's `verifyError` (a private field)
 * nothing can be verified, so the client is refused when it must be.
 */
const verifyClient = (secure: Tls.TLSSocket, options: Prepared): string | undefined => {
  const handle: unknown = Reflect.get(secure, "_handle")
  const verifyError: unknown = typeof handle === "object" && handle !== null ? Reflect.get(handle, "verifyError") : undefined
  const verdict: unknown = typeof verifyError === "function" ? Reflect.apply(verifyError, handle, []) : unverifiable
  if (verdict === null || verdict === undefined) {
    secure.authorized = true
    return undefined
  }
  const code: unknown = Reflect.get(Object(verdict), "code")
  const reason = typeof code === "string" ? code : verdict instanceof Error ? verdict.message : String(verdict)
  Reflect.set(secure, "authorizationError", reason)
  return options.rejectUnauthorized ? reason : undefined
}

const unverifiable = Object.assign(new Error("this Node does not tell a server whether the client's certificate verified"), {
  code: "UNABLE_TO_VERIFY_CLIENT_CERTIFICATE"
})

const isIp = (host: string): boolean => /^[0-9.]+$/.test(host) || host.includes(":")

/**
 * Upgrades `conn` to TLS as `role` within `deadline`: the returned
 * connection owns the socket, the slot and what was unread (handed to
 * OpenSSL first, as libdill's TLS reads through the socket's buffer); `conn`
 * is closed without touching them. `host` is the name or address the
 * certificate must be for (the client's `serverName` wins).
 */
export const upgrade = (
  conn: Connection<NodeTransport>,
  role: "client" | "server",
  options: Prepared,
  host: string | undefined,
  deadline: Deadline,
  syscall: string
): Effect.Effect<Connection<NodeTransport>, UpgradeError> =>
  Effect.suspend(() => {
    const address = conn.address
    const handover = conn.handOver(syscall)
    if (Result.isFailure(handover)) return Effect.fail(handover.failure)
    const { leftover, takeOver, transport } = handover.success
    const raw = transport.socket
    // OpenSSL reads what the socket already buffered before the handle.
    if (leftover.length > 0) raw.unshift(Buffer.from(leftover))
    const name = options.serverName ?? host
    const secure = role === "client"
      ? Tls.connect({
        socket: raw,
        secureContext: options.context,
        rejectUnauthorized: options.rejectUnauthorized,
        ALPNProtocols: options.alpn,
        host: name,
        servername: name !== undefined && !isIp(name) ? name : undefined
      })
      : new Tls.TLSSocket(raw, {
        isServer: true,
        secureContext: options.context,
        requestCert: options.requestCert,
        rejectUnauthorized: options.requestCert && options.rejectUnauthorized,
        ALPNProtocols: options.alpn
      })
    const upgraded = takeOver((events) => new NodeTransport(events, secure, true, true))
    const handshake = awaitEvent<void, UpgradeError, TcpError.TimedOut>(
      deadline,
      () => TcpError.timedOut(syscall, address),
      (resume) => {
        const cleanup = () => {
          secure.off(role === "client" ? "secureConnect" : "secure", onSecure)
          secure.off("error", onError)
          secure.off("close", onClose)
          secure.off("end", onClose)
        }
        const onSecure = () => {
          cleanup()
          if (secure.destroyed) return onClose()
          const rejected = role === "server" && options.requestCert ? verifyClient(secure, options) : undefined
          if (rejected === undefined) return resume(Effect.void)
          resume(Effect.fail(TcpError.make({ tag: "CertificateRejected", syscall, address, reason: rejected })))
        }
        const onError = (cause: Error) => {
          cleanup()
          resume(Effect.fail(handshakeError(cause, syscall, address)))
        }
        const onClose = () => {
          cleanup()
          const rejected = secure.authorizationError
          resume(Effect.fail(
            rejected !== undefined && rejected !== null
              ? TcpError.make({ tag: "CertificateRejected", syscall, address, reason: String(rejected) })
              : TcpError.make({
                tag: "TlsHandshakeFailed",
                syscall,
                address,
                reason: "ECONNRESET",
                detail: "the peer closed the connection during the handshake"
              })
          ))
        }
        secure.once(role === "client" ? "secureConnect" : "secure", onSecure)
        secure.once("error", onError)
        secure.once("close", onClose)
        // Half-open sockets report the peer's FIN as 'end' only: during a handshake it ends it (as node:tls's client does).
        secure.once("end", onClose)
        return cleanup
      }
    )
    return Effect.onExit(
      Effect.as(handshake, upgraded),
      (exit) => exit._tag === "Failure" ? upgraded.abort : Effect.void
    )
  })
