/**
 * Every way a TCP operation can fail, one tagged error per errno.
 *
 * Each class is a `Schema.TaggedError` carrying the `errno` string, the
 * `syscall` that failed and, where known, the peer or local `address`. The
 * per-operation unions (`ConnectError`, `SendError`, ...) say exactly what a
 * call can fail with, so `Effect.catchTags` over them can be exhaustive.
 *
 * Interruption is this library's `ECANCELED`: it is never a value here.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

const fields = {
  errno: Schema.String,
  syscall: Schema.String,
  address: Schema.optional(Schema.String),
  message: Schema.String
}

/**
 * The fields every error carries: `errno` (e.g. `"ECONNREFUSED"`), `syscall`
 * (`"connect"`, `"read"`, ...), `address` where known, and a readable `message`.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const describe = (e: TcpError.ErrorFields) => `${e.syscall}: ${e.errno}`
 * ```
 * @since 0.1.0
 */
export interface ErrorFields {
  readonly errno: string
  readonly syscall: string
  readonly address?: string | undefined
  readonly message: string
}

/**
 * ECONNREFUSED: nothing listens at the address, or the peer refused.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient } from "effect-tcp"
 * TcpClient.connect("127.0.0.1:1").pipe(Effect.catchTag("ConnRefused", () => Effect.succeed(null)))
 * ```
 * @since 0.1.0
 */
export class ConnRefused extends Schema.TaggedError<ConnRefused>()("ConnRefused", fields) {}

/**
 * ECONNRESET: the peer reset the connection.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const isReset = (e: TcpError.TcpError) => e._tag === "ConnReset"
 * ```
 * @since 0.1.0
 */
export class ConnReset extends Schema.TaggedError<ConnReset>()("ConnReset", fields) {}

/**
 * EHOSTUNREACH: no route to the host.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.fromCode("EHOSTUNREACH", "connect", "192.0.2.1:80") // HostUnreach
 * ```
 * @since 0.1.0
 */
export class HostUnreach extends Schema.TaggedError<HostUnreach>()("HostUnreach", fields) {}

/**
 * ENETUNREACH: no route to the network.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.fromCode("ENETUNREACH", "connect") // NetUnreach
 * ```
 * @since 0.1.0
 */
export class NetUnreach extends Schema.TaggedError<NetUnreach>()("NetUnreach", fields) {}

/**
 * ENETDOWN: the local interface used to reach the destination is down.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.fromCode("ENETDOWN", "connect") // NetDown
 * ```
 * @since 0.1.0
 */
export class NetDown extends Schema.TaggedError<NetDown>()("NetDown", fields) {}

/**
 * ETIMEDOUT: the call's deadline passed (or the kernel gave up on the peer).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient } from "effect-tcp"
 * TcpClient.connect("127.0.0.1:6379", { timeout: "1 second" }).pipe(
 *   Effect.catchTag("TimedOut", () => Effect.succeed(null))
 * )
 * ```
 * @since 0.1.0
 */
export class TimedOut extends Schema.TaggedError<TimedOut>()("TimedOut", fields) {}

/**
 * EINVAL: a bad port, address, deadline, length, option, or a storage slot
 * already in use.
 *
 * @example
 * ```ts
 * import { TcpClient } from "effect-tcp"
 * TcpClient.connect("127.0.0.1:0") // fails with InvalidArgument
 * ```
 * @since 0.1.0
 */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>()("InvalidArgument", fields) {}

/**
 * EMFILE: the process has no free file descriptors.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.fromCode("EMFILE", "connect") // TooManyOpenFiles
 * ```
 * @since 0.1.0
 */
export class TooManyOpenFiles extends Schema.TaggedError<TooManyOpenFiles>()("TooManyOpenFiles", fields) {}

/**
 * ENFILE: the system has no free file descriptors.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.fromCode("ENFILE", "accept") // SystemFileLimit
 * ```
 * @since 0.1.0
 */
export class SystemFileLimit extends Schema.TaggedError<SystemFileLimit>()("SystemFileLimit", fields) {}

/**
 * ENOMEM: out of memory, including a storage pool that is exhausted and set
 * to fail fast.
 *
 * @example
 * ```ts
 * import { TcpStorage } from "effect-tcp"
 * TcpStorage.layer({ slots: 8, onExhausted: "fail" }) // the 9th socket fails with OutOfMemory
 * ```
 * @since 0.1.0
 */
export class OutOfMemory extends Schema.TaggedError<OutOfMemory>()("OutOfMemory", fields) {}

/**
 * EPIPE: sending after `done`, or after the peer went away.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * socket.done().pipe(Effect.andThen(socket.send(new Uint8Array(1)))) // fails with BrokenPipe
 * ```
 * @since 0.1.0
 */
export class BrokenPipe extends Schema.TaggedError<BrokenPipe>()("BrokenPipe", fields) {}

/**
 * The peer finished sending before the requested number of bytes arrived.
 * `bytes` holds what did arrive (possibly nothing). libdill reports this as
 * EPIPE on receive; here it has its own tag.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * socket.recv(4).pipe(Effect.catchTag("PeerClosed", (e) => Effect.succeed(e.bytes)))
 * ```
 * @since 0.1.0
 */
export class PeerClosed extends Schema.TaggedError<PeerClosed>()("PeerClosed", {
  ...fields,
  bytes: Schema.Uint8Array
}) {}

/**
 * EADDRINUSE: the address is already bound.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.fromCode("EADDRINUSE", "listen", "127.0.0.1:80") // AddrInUse
 * ```
 * @since 0.1.0
 */
export class AddrInUse extends Schema.TaggedError<AddrInUse>()("AddrInUse", fields) {}

/**
 * EADDRNOTAVAIL: the address is not available here, or the name does not
 * resolve.
 *
 * @example
 * ```ts
 * import { TcpClient } from "effect-tcp"
 * TcpClient.connect("no-such-host.invalid:80") // fails with AddrNotAvail
 * ```
 * @since 0.1.0
 */
export class AddrNotAvail extends Schema.TaggedError<AddrNotAvail>()("AddrNotAvail", fields) {}

/**
 * EACCES / EPERM: the operation is not permitted (a privileged port, a
 * firewall or `prohibit` route).
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.fromCode("EACCES", "listen", "0.0.0.0:80") // AccessDenied
 * ```
 * @since 0.1.0
 */
export class AccessDenied extends Schema.TaggedError<AccessDenied>()("AccessDenied", fields) {}

/**
 * EBADF: the socket or listener was already closed.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * socket.abort.pipe(Effect.andThen(socket.recv(1))) // fails with Closed
 * ```
 * @since 0.1.0
 */
export class Closed extends Schema.TaggedError<Closed>()("Closed", fields) {}

/**
 * EMSGSIZE: a message longer than its `max` (`recvUntil`, the message
 * protocols), or than a prefix header can express.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * socket.recvUntil("\r\n", { max: 1024 }).pipe(Effect.catchTag("MessageTooLarge", () => socket.abort))
 * ```
 * @since 0.1.0
 */
export class MessageTooLarge extends Schema.TaggedError<MessageTooLarge>()("MessageTooLarge", fields) {}

const tlsFields = { ...fields, reason: Schema.String }

/**
 * EPROTO: the TLS handshake failed: no protocol version or cipher in
 * common, an alert from the peer, or a peer that does not speak TLS.
 * `reason` names it (an OpenSSL or Node code such as
 * `ERR_SSL_WRONG_VERSION_NUMBER`, or the alert).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient } from "effect-tcp"
 * TcpClient.connect("127.0.0.1:6379", { tls: {} }).pipe(
 *   Effect.catchTag("TlsHandshakeFailed", (e) => Effect.logWarning(e.reason))
 * )
 * ```
 * @since 0.1.0
 */
export class TlsHandshakeFailed extends Schema.TaggedError<TlsHandshakeFailed>()("TlsHandshakeFailed", tlsFields) {}

/**
 * EPROTO: the peer's certificate failed verification. `reason` keeps
 * OpenSSL's or Node's code: `DEPTH_ZERO_SELF_SIGNED_CERT`,
 * `ERR_TLS_CERT_ALTNAME_INVALID`, `CERT_HAS_EXPIRED`,
 * `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, ...
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient } from "effect-tcp"
 * TcpClient.connect("localhost:6380", { tls: {} }).pipe(
 *   Effect.catchTag("CertificateRejected", (e) => Effect.fail(`untrusted peer: ${e.reason}`))
 * )
 * ```
 * @since 0.1.0
 */
export class CertificateRejected
  extends Schema.TaggedError<CertificateRejected>()("CertificateRejected", tlsFields)
{}

/**
 * Any other errno, kept as its string: never a defect, never lost.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.fromCode("EPROTO", "read") // SystemError with errno "EPROTO"
 * ```
 * @since 0.1.0
 */
export class SystemError extends Schema.TaggedError<SystemError>()("SystemError", fields) {}

// The classes by tag. `satisfies` makes each key name its own class and
// requires a class for every tag the lists below use.
const classes = {
  ConnRefused,
  ConnReset,
  HostUnreach,
  NetUnreach,
  NetDown,
  TimedOut,
  InvalidArgument,
  TooManyOpenFiles,
  SystemFileLimit,
  OutOfMemory,
  BrokenPipe,
  PeerClosed,
  AddrInUse,
  AddrNotAvail,
  AccessDenied,
  Closed,
  MessageTooLarge,
  TlsHandshakeFailed,
  CertificateRejected,
  SystemError
} satisfies { readonly [T in Tag]: abstract new(...args: never) => { readonly _tag: T } }

// What each call can fail with, written once: the union types and the
// runtime sets `narrow` takes are both read from these lists.
const tagsByCall = {
  connect: [
    "ConnRefused",
    "ConnReset",
    "HostUnreach",
    "NetUnreach",
    "NetDown",
    "TimedOut",
    "InvalidArgument",
    "TooManyOpenFiles",
    "SystemFileLimit",
    "OutOfMemory",
    "AddrNotAvail",
    "AccessDenied",
    "SystemError"
  ],
  send: ["ConnReset", "TimedOut", "InvalidArgument", "BrokenPipe", "Closed", "SystemError"],
  recv: ["ConnReset", "TimedOut", "InvalidArgument", "PeerClosed", "Closed", "SystemError"],
  recvUntil: ["ConnReset", "TimedOut", "InvalidArgument", "PeerClosed", "Closed", "MessageTooLarge", "SystemError"],
  close: ["ConnReset", "TimedOut", "InvalidArgument", "Closed", "SystemError"],
  listen: [
    "AddrInUse",
    "AddrNotAvail",
    "AccessDenied",
    "InvalidArgument",
    "TooManyOpenFiles",
    "SystemFileLimit",
    "SystemError"
  ],
  accept: ["TimedOut", "InvalidArgument", "TooManyOpenFiles", "SystemFileLimit", "OutOfMemory", "Closed", "SystemError"],
  tls: ["TlsHandshakeFailed", "CertificateRejected"]
} as const

/**
 * The error class instance for a tag, or the union of them for a union of tags.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * type Retryable = TcpError.ErrorOf<"TimedOut" | "ConnReset"> // TcpError.TimedOut | TcpError.ConnReset
 * ```
 * @since 0.1.0
 */
export type ErrorOf<T extends Tag> = InstanceType<(typeof classes)[T]>

/**
 * What `TcpClient.connect` can fail with: the man page's errors plus
 * `AddrNotAvail`, `AccessDenied` and `SystemError`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { TcpError } from "effect-tcp"
 * const tagOf = (e: TcpError.ConnectError) => e._tag
 * ```
 * @since 0.1.0
 */
export type ConnectError = ErrorOf<(typeof tagsByCall.connect)[number]>

/**
 * What `send`, `sendv` and `done` can fail with.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const retryable = (e: TcpError.SendError) => e._tag === "TimedOut"
 * ```
 * @since 0.1.0
 */
export type SendError = ErrorOf<(typeof tagsByCall.send)[number]>

/**
 * What `recv`, `recvInto` and `recvv` can fail with.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const atEof = (e: TcpError.RecvError) => e._tag === "PeerClosed"
 * ```
 * @since 0.1.0
 */
export type RecvError = ErrorOf<(typeof tagsByCall.recv)[number]>

/**
 * What `recvUntil` can fail with: a receive's errors plus `MessageTooLarge`.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const tooLong = (e: TcpError.RecvUntilError) => e._tag === "MessageTooLarge"
 * ```
 * @since 0.1.0
 */
export type RecvUntilError = ErrorOf<(typeof tagsByCall.recvUntil)[number]>

/**
 * What a graceful `close` can fail with. The socket is released either way.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const peerWasSlow = (e: TcpError.CloseError) => e._tag === "TimedOut"
 * ```
 * @since 0.1.0
 */
export type CloseError = ErrorOf<(typeof tagsByCall.close)[number]>

/**
 * What `TcpListener.listen` can fail with.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const portTaken = (e: TcpError.ListenError) => e._tag === "AddrInUse"
 * ```
 * @since 0.1.0
 */
export type ListenError = ErrorOf<(typeof tagsByCall.listen)[number]>

/**
 * What `listener.accept` can fail with.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const outOfFds = (e: TcpError.AcceptError) => e._tag === "TooManyOpenFiles"
 * ```
 * @since 0.1.0
 */
export type AcceptError = ErrorOf<(typeof tagsByCall.accept)[number]>

/**
 * What a TLS handshake adds to a connect, an accept or an upgrade
 * (`TcpTls`): `TlsHandshakeFailed` or `CertificateRejected`.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const untrusted = (e: TcpError.TlsError) => e._tag === "CertificateRejected"
 * ```
 * @since 0.1.0
 */
export type TlsError = ErrorOf<(typeof tagsByCall.tls)[number]>

/**
 * The tag of any `TcpError`: every tag some call can fail with.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const tag: TcpError.Tag = "ConnRefused"
 * ```
 * @since 0.1.0
 */
export type Tag = (typeof tagsByCall)[keyof typeof tagsByCall][number]

/**
 * Every error this library can produce.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const log = (e: TcpError.TcpError) => `${e._tag} ${e.errno} ${e.syscall}`
 * ```
 * @since 0.1.0
 */
export type TcpError = ErrorOf<Tag>

/**
 * The tags of `ConnectError`, for `narrow`.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * TcpError.connectTags.has("ConnRefused") // true
 * ```
 * @since 0.1.0
 */
export const connectTags: ReadonlySet<ConnectError["_tag"]> = new Set(tagsByCall.connect)

/**
 * The tags of `SendError`, for `narrow`.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * TcpError.sendTags.has("BrokenPipe") // true
 * ```
 * @since 0.1.0
 */
export const sendTags: ReadonlySet<SendError["_tag"]> = new Set(tagsByCall.send)

/**
 * The tags of `RecvError`, for `narrow`.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * TcpError.recvTags.has("PeerClosed") // true
 * ```
 * @since 0.1.0
 */
export const recvTags: ReadonlySet<RecvError["_tag"]> = new Set(tagsByCall.recv)

/**
 * The tags `recvUntil` can fail with, at runtime.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * TcpError.recvUntilTags.has("MessageTooLarge") // true
 * ```
 * @since 0.1.0
 */
export const recvUntilTags: ReadonlySet<RecvUntilError["_tag"]> = new Set(tagsByCall.recvUntil)

/**
 * The tags of `CloseError`, for `narrow`.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * TcpError.closeTags.has("TimedOut") // true
 * ```
 * @since 0.1.0
 */
export const closeTags: ReadonlySet<CloseError["_tag"]> = new Set(tagsByCall.close)

/**
 * The tags of `ListenError`, for `narrow`.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * TcpError.listenTags.has("AddrInUse") // true
 * ```
 * @since 0.1.0
 */
export const listenTags: ReadonlySet<ListenError["_tag"]> = new Set(tagsByCall.listen)

/**
 * The tags of `AcceptError`, for `narrow`.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * TcpError.acceptTags.has("TooManyOpenFiles") // true
 * ```
 * @since 0.1.0
 */
export const acceptTags: ReadonlySet<AcceptError["_tag"]> = new Set(tagsByCall.accept)

/**
 * The tags of `TlsError`, for `narrow`.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * TcpError.tlsTags.has("CertificateRejected") // true
 * ```
 * @since 0.1.0
 */
export const tlsTags: ReadonlySet<TlsError["_tag"]> = new Set(tagsByCall.tls)

/**
 * Whether a value is one of this module's errors: an instance of one of its
 * classes, not merely an object with a matching `_tag`.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * TcpError.isTcpError(TcpError.timedOut("recv")) // true
 * TcpError.isTcpError({ _tag: "TimedOut" }) // false
 * TcpError.isTcpError(new Error("boom")) // false
 * ```
 * @since 0.1.0
 */
export const isTcpError = (u: unknown): u is TcpError => {
  if (typeof u !== "object" || u === null) return false
  const tag: unknown = Reflect.get(u, "_tag")
  return typeof tag === "string" && Object.hasOwn(classes, tag) && u instanceof classes[tag as Tag]
}

/** The tags an errno from the kernel or Node can map to. */
type ErrnoTag = Exclude<Tag, "PeerClosed" | "SystemError" | TlsError["_tag"]>

/** The errors an errno can be: all but those that carry more than one (`PeerClosed`, the TLS errors). */
type ErrnoError = Exclude<TcpError, PeerClosed | TlsError>

// DESIGN.md's table, written once: each tag's errnos with what they mean. The
// first errno is the one the tag carries when this library raises it. Every
// errno maps to its tag; any other is SystemError, kept as given. PeerClosed
// carries EPIPE, libdill's errno for a receive cut short, but an EPIPE from
// the kernel is BrokenPipe, so PeerClosed is not here. Nor are the TLS
// errors: both carry EPROTO, which from the kernel is no TLS failure.
const errnoTable = {
  ConnRefused: { ECONNREFUSED: "connection refused" },
  ConnReset: { ECONNRESET: "connection reset by peer" },
  HostUnreach: { EHOSTUNREACH: "host unreachable" },
  NetUnreach: { ENETUNREACH: "network unreachable" },
  NetDown: { ENETDOWN: "network is down" },
  TimedOut: { ETIMEDOUT: "timed out" },
  InvalidArgument: { EINVAL: "invalid argument" },
  TooManyOpenFiles: { EMFILE: "too many open files in this process" },
  SystemFileLimit: { ENFILE: "too many open files in the system" },
  OutOfMemory: { ENOMEM: "out of memory", ENOBUFS: "out of buffer space" },
  BrokenPipe: { EPIPE: "broken pipe" },
  AddrInUse: { EADDRINUSE: "address already in use" },
  AddrNotAvail: { EADDRNOTAVAIL: "address not available", ENOTFOUND: "name does not resolve" },
  AccessDenied: { EACCES: "permission denied", EPERM: "operation not permitted" },
  Closed: { EBADF: "socket is closed" },
  MessageTooLarge: { EMSGSIZE: "message too long" }
} satisfies { readonly [T in ErrnoTag]: { readonly [errno: string]: string } }

const errnoRows = Object.entries(errnoTable).flatMap(([tag, errnos]) =>
  Object.entries(errnos).map(([errno, description]) => ({ tag: tag as ErrnoTag, errno, description }))
)

// Maps, not objects: an errno such as "__proto__" or "toString" must find nothing.
const tagByErrno: ReadonlyMap<string, ErrnoTag> = new Map(errnoRows.map((row) => [row.errno, row.tag]))
const describeErrno: ReadonlyMap<string, string> = new Map(errnoRows.map((row) => [row.errno, row.description]))
// Reversed so that each tag's first errno is the one the map keeps.
const errnoByTag: ReadonlyMap<string, string> = new Map(errnoRows.toReversed().map((row) => [row.tag, row.errno]))

/**
 * What `make` builds an error from. `errno` defaults to the one the tag
 * carries (`AccessDenied` may say `"EPERM"` instead of `"EACCES"`) and must
 * be given for `SystemError`; `detail`, when given, replaces the errno's
 * description in the message. `PeerClosed` takes the `bytes` that did arrive,
 * the TLS errors their `reason`.
 *
 * @example
 * ```ts
 * import type { TcpError } from "effect-tcp"
 * const fields: TcpError.MakeFields<"ConnReset"> = { tag: "ConnReset", syscall: "recv", address: "127.0.0.1:6379" }
 * ```
 * @since 0.1.0
 */
export type MakeFields<T extends Tag = Tag> = {
  readonly [K in Tag]:
    & { readonly tag: K; readonly syscall: string; readonly address?: string | undefined }
    & (K extends "PeerClosed" ? { readonly bytes: Uint8Array }
      : K extends TlsError["_tag"] ? { readonly reason: string; readonly detail?: string | undefined }
      : K extends ErrnoTag ? {
          readonly errno?: keyof (typeof errnoTable)[K] | undefined
          readonly detail?: string | undefined
        }
      : { readonly errno: string; readonly detail?: string | undefined })
}[T]

const messageOf = (errno: string, syscall: string, address: string | undefined, detail: string | undefined) =>
  `${where(syscall, address)}: ${detail ?? describeErrno.get(errno) ?? "system error"} (${errno})`

const where = (syscall: string, address: string | undefined) =>
  address === undefined ? syscall : `${syscall} ${address}`

/**
 * Builds an error from named fields; its `message` is derived from them, in
 * one format for the whole library: `"<syscall> <address>: <detail or the
 * errno's description> (<errno>)"`.
 *
 * The positional form, `make(Class, errno, syscall, address, detail)`, builds
 * any class with the same message and is kept for existing callers.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.make({ tag: "ConnReset", syscall: "recv", address: "127.0.0.1:6379", detail: "peer aborted" })
 * e.errno // "ECONNRESET"
 * e.message // "recv 127.0.0.1:6379: peer aborted (ECONNRESET)"
 * const old = TcpError.make(TcpError.AddrNotAvail, "EADDRNOTAVAIL", "connect", "db:5432", "cannot resolve")
 * ```
 * @since 0.1.0
 */
export function make<T extends Tag>(fields: MakeFields<T> & { readonly tag: T }): ErrorOf<T>
/**
 * The positional form: builds any error class with the library's message.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.make(TcpError.AddrNotAvail, "EADDRNOTAVAIL", "connect", "db:5432", "cannot resolve")
 * ```
 * @since 0.1.0
 */
export function make<E>(
  Make: new(fields: ErrorFields) => E,
  errno: string,
  syscall: string,
  address: string | undefined,
  detail: string | undefined
): E
export function make(
  ...args:
    | [fields: MakeFields]
    | [
      Make: new(fields: ErrorFields) => unknown,
      errno: string,
      syscall: string,
      address: string | undefined,
      detail: string | undefined
    ]
): unknown {
  if (args.length === 1) return fromFields(args[0])
  const [Make, errno, syscall, address, detail] = args
  return new Make({ errno, syscall, address, message: messageOf(errno, syscall, address, detail) })
}

const fromFields = (fields: MakeFields): TcpError => {
  const { address, syscall } = fields
  if (fields.tag === "PeerClosed") {
    const { bytes } = fields
    const message = `${where(syscall, address)}: peer closed after ${bytes.length} bytes`
    return new PeerClosed({ errno: "EPIPE", syscall, address, bytes, message })
  }
  if (fields.tag === "TlsHandshakeFailed" || fields.tag === "CertificateRejected") {
    const Make = classes[fields.tag]
    const detail = fields.detail ?? (fields.tag === "CertificateRejected" ? "certificate rejected" : "TLS handshake failed")
    const message = messageOf("EPROTO", syscall, address, `${detail}: ${fields.reason}`)
    return new Make({ errno: "EPROTO", syscall, address, reason: fields.reason, message })
  }
  // Only SystemError has no errno of its own, and its fields must name one.
  return build(fields.tag, fields.errno ?? errnoByTag.get(fields.tag) ?? "EIO", syscall, address, fields.detail)
}

const build = (
  tag: ErrnoError["_tag"],
  errno: string,
  syscall: string,
  address: string | undefined,
  detail: string | undefined
): ErrnoError => {
  const Make: new(fields: ErrorFields) => ErrnoError = classes[tag]
  return new Make({ errno, syscall, address, message: messageOf(errno, syscall, address, detail) })
}

/**
 * Builds the error for an errno string, e.g. the `code` of a Node
 * `ErrnoException`. Unknown codes become `SystemError`. `detail`, when given,
 * replaces the generic description in the message.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.fromCode("ECONNREFUSED", "connect", "127.0.0.1:6379")
 * e._tag // "ConnRefused"
 * e.message // "connect 127.0.0.1:6379: connection refused (ECONNREFUSED)"
 * ```
 * @since 0.1.0
 */
export const fromCode = (
  errno: string,
  syscall: string,
  address?: string,
  detail?: string
): ErrnoError => build(tagByErrno.get(errno) ?? "SystemError", errno, syscall, address, detail)

/**
 * Builds the error for anything a Node callback or event reported: an
 * `ErrnoException` keeps its `code`, anything else becomes `SystemError`
 * (`EIO`), never a defect.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.fromUnknown(new Error("boom"), "read") // SystemError
 * ```
 * @since 0.1.0
 */
export const fromUnknown = (cause: unknown, syscall: string, address?: string): ErrnoError => {
  const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined
  if (typeof code === "string" && /^E(?!RR_)[A-Z0-9_]+$/.test(code)) return fromCode(code, syscall, address)
  const detail = cause instanceof Error ? cause.message : describeUnknown(cause)
  return fromCode("EIO", syscall, address, detail)
}

const describeUnknown = (cause: unknown): string => {
  try {
    return String(cause)
  } catch {
    return Object.prototype.toString.call(cause)
  }
}

/**
 * Narrows an error to the tags an operation documents: any other becomes a
 * `SystemError` with the same errno, so the operation's type stays exact.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.narrow(TcpError.fromCode("EPIPE", "connect"), TcpError.connectTags)
 * e._tag // "SystemError": connect never reports BrokenPipe
 * ```
 * @since 0.1.0
 */
export const narrow = <T extends Tag>(
  error: ErrnoError,
  allowed: ReadonlySet<T>
): Extract<TcpError, { readonly _tag: T }> | SystemError =>
  allowed.has(error._tag as T)
    ? error as Extract<TcpError, { readonly _tag: T }>
    : new SystemError({
      errno: error.errno,
      syscall: error.syscall,
      address: error.address,
      message: error.message
    })

/**
 * Shorthand for the errors this library raises itself, with a specific
 * message: `invalid("connect", "port must be an integer from 1 through 65535", "x:0")`.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.invalid("recv", "length must be a non-negative integer")
 * ```
 * @since 0.1.0
 */
export const invalid = (syscall: string, detail: string, address?: string): InvalidArgument =>
  make({ tag: "InvalidArgument", syscall, address, detail })

/**
 * The `TimedOut` error for an operation whose deadline passed.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.timedOut("recv", "127.0.0.1:6379")
 * ```
 * @since 0.1.0
 */
export const timedOut = (syscall: string, address?: string): TimedOut =>
  make({ tag: "TimedOut", syscall, address, detail: "deadline reached" })

/**
 * The `Closed` error for a call on a socket or listener that was closed.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.closed("send", "127.0.0.1:6379")
 * ```
 * @since 0.1.0
 */
export const closed = (syscall: string, address?: string): Closed => make({ tag: "Closed", syscall, address })

/**
 * The `OutOfMemory` error, e.g. for a storage pool set to fail fast.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.outOfMemory("connect", "storage pool exhausted")
 * ```
 * @since 0.1.0
 */
export const outOfMemory = (syscall: string, detail: string, address?: string): OutOfMemory =>
  make({ tag: "OutOfMemory", syscall, address, detail })

/**
 * The `PeerClosed` error of a receive that reached the peer's FIN after
 * `bytes.length` of the requested bytes.
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * const e = TcpError.peerClosed("recv", new Uint8Array([1, 2]), "127.0.0.1:6379")
 * e.bytes.length // 2
 * ```
 * @since 0.1.0
 */
export const peerClosed = (syscall: string, bytes: Uint8Array, address?: string): PeerClosed =>
  make({ tag: "PeerClosed", syscall, address, bytes })
