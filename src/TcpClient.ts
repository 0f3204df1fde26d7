/**
 * Outgoing TCP connections: libdill's `tcp_connect` / `tcp_connect_mem` /
 * `tcp_fromfd` as an Effect service.
 *
 * @since 0.1.0
 */
import { Array as Arr, Config, Context, Deferred, Duration, Effect, Exit, Latch, Layer, Option, Result } from "effect"
import * as Socket from "effect/socket/Socket"
import type { Scope } from "effect"
import { AddressResolver, NetAddress } from "effect/net"
import * as NodeAddressResolver from "@effect/platform-node/NodeAddressResolver"
import * as NodeDns from "@effect/platform-node/NodeDns"
import { readFileSync } from "node:fs"
import * as Deadline from "./Deadline.ts"
import {
  destination,
  type Family,
  isTcpDescriptor,
  nodeHost,
  peerOf,
  portRange,
  resolve,
  type TcpAddress
} from "./internal/address.ts"
import type { Connection as CoreConnection } from "./internal/core/connection.ts"
import { connect as connectSocket, nodeConnection, type NodeTransport } from "./internal/node/transport.ts"
import { annotateSpan, observed } from "./internal/observe.ts"
import { prepareOnce, reportedAs, upgradeConnection } from "./internal/tls.ts"
import { poolOf } from "./internal/storage.ts"
import { attach } from "./internal/tcpSocket.ts"
import { socketReader, socketWriter } from "./internal/socket.ts"
import {
  applySettings,
  badDescriptor,
  checkedDuration,
  isDescriptor,
  orDefault,
  resolveClient,
  resolveSettings,
  type SocketSettings
} from "./internal/options.ts"
import { make as makeConnectionPool, type Stats as ConnectionPoolStats } from "./internal/connectionPool.ts"
import { claim, claimNow, type Pool, type SlotMemory, unclaim } from "./internal/pool.ts"
import * as TcpError from "./TcpError.ts"
import * as TcpSocket from "./TcpSocket.ts"
import { TcpStorage } from "./TcpStorage.ts"
import type * as TcpStorageModule from "./TcpStorage.ts"
import type * as TcpTls from "./TcpTls.ts"

/** A connection over a Node socket. */
type Connection = CoreConnection<NodeTransport>

export type {
  /**
   * Where to connect: `"host:port"`, `"[v6]:port"`, `{ host, port }` or
   * `effect/net`'s `NetAddress.InetAddress`.
   *
   * @since 0.1.0
   */
  TcpAddress
}

/**
 * Options for `connect`: a deadline and/or timeout for the whole call (name
 * resolution, waiting for a storage slot, the handshake), the caller's own
 * storage slot, socket settings, the address family a name may resolve to,
 * and the local address and/or port to bind (an IP literal; port `0` or
 * none lets the kernel pick). A name then resolves only to addresses of the
 * local address's family.
 *
 * @example
 * ```ts
 * import type { TcpClient } from "effect-tcp"
 * const options: TcpClient.ConnectOptions = { timeout: "2 seconds", family: "ipv4", keepAlive: "30 seconds" }
 * ```
 * @since 0.1.0
 */
export interface ConnectOptions extends Deadline.Options, SocketSettings {
  readonly storage?: TcpStorageModule.Slot | undefined
  readonly family?: Family | undefined
  readonly localAddress?: string | undefined
  readonly localPort?: number | undefined
  /**
   * RFC 8305 ("happy eyeballs"): when a name resolves to several addresses,
   * try them interleaving families, starting the next one after this delay
   * (`true`: 250 ms) or as soon as the previous attempt failed; the first to
   * connect wins and the others are closed. Off by default: addresses are
   * then tried one after another.
   */
  readonly happyEyeballs?: boolean | Duration.Input | undefined
  /**
   * TLS on the connection (libdill's `tls_attach_client`): the handshake
   * completes within the same deadline, and the call may then fail with
   * `TlsHandshakeFailed` or `CertificateRejected`. `serverName` defaults to
   * the host name given.
   */
  readonly tls?: TcpTls.ClientOptions | undefined
}

/**
 * What a connect (or a pool's `get`) with `Options` can fail with: a TLS
 * error only when the options may carry `tls`.
 *
 * @example
 * ```ts
 * import type { TcpClient } from "effect-tcp"
 * type Plain = TcpClient.ConnectErrorOf<{ timeout: "1 second" }> // TcpError.ConnectError
 * ```
 * @since 0.1.0
 */
export type ConnectErrorOf<Options> = "tls" extends keyof Options
  ? [Options["tls" & keyof Options]] extends [undefined] ? TcpError.ConnectError
  : TcpError.ConnectError | TcpError.TlsError
  : TcpError.ConnectError

/**
 * `connect`'s signature: without `tls` in its options it cannot fail with a
 * TLS error, and its type says so.
 *
 * @example
 * ```ts
 * import type { TcpClient } from "effect-tcp"
 * declare const connect: TcpClient.Connect
 * const plain = connect("127.0.0.1:6379") // fails with ConnectError only
 * ```
 * @since 0.1.0
 */
export interface Connect {
  (
    address: TcpAddress,
    options?: ConnectOptions & { readonly tls?: undefined }
  ): Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError, Scope.Scope>
  (
    address: TcpAddress,
    options?: ConnectOptions
  ): Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError | TcpError.TlsError, Scope.Scope>
}

/**
 * Options for `fromFd`.
 *
 * @example
 * ```ts
 * import type { TcpClient } from "effect-tcp"
 * const options: TcpClient.FromFdOptions = { noDelay: false }
 * ```
 * @since 0.1.0
 */
export interface FromFdOptions extends Deadline.Options, SocketSettings {
  readonly storage?: TcpStorageModule.Slot | undefined
}

/**
 * The client service.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpNode } from "effect-tcp"
 * const program = Effect.gen(function*() {
 *   const client = yield* TcpClient.TcpClient
 *   const socket = yield* client.connect("127.0.0.1:6379")
 * }).pipe(Effect.scoped, Effect.provide(TcpNode.layer))
 * ```
 * @since 0.1.0
 */
export class TcpClient extends Context.Service<TcpClient, {
  readonly connect: Connect
  readonly fromFd: (
    fd: number,
    options?: FromFdOptions
  ) => Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError, Scope.Scope>
}>()("effect-tcp/TcpClient") {
  /**
   * The Node client. Names resolve through the `AddressResolver` in context
   * when there is one, else through the operating system's resolver.
   *
   * @example
   * ```ts
   * import { Layer } from "effect"
   * import { TcpClient, TcpStorage } from "effect-tcp"
   * const Tcp = TcpClient.TcpClient.layer.pipe(Layer.provideMerge(TcpStorage.layer({ slots: 64 })))
   * ```
   * @since 0.1.0
   */
  static readonly layer: Layer.Layer<TcpClient, never, TcpStorage> = Layer.suspend(() => clientLayer())

  /**
   * The Node client with defaults of your own: `connectTimeout` (a
   * non-negative duration; infinite means none) bounds every connect that
   * gives neither a deadline nor a timeout. Defaults that are not valid fail
   * the layer with `InvalidArgument` when it is built.
   *
   * @example
   * ```ts
   * import { TcpClient } from "effect-tcp"
   * const Client = TcpClient.TcpClient.layerWith({ connectTimeout: "3 seconds" })
   * ```
   * @since 0.1.0
   */
  static readonly layerWith: LayerWithConstructor = clientLayer

  /**
   * The Node client configured from `Config`: `TCP_CONNECT_TIMEOUT` (a
   * duration such as `"5 seconds"`, optional) is the default connect timeout;
   * `TCP_TLS_CA_FILE` (a PEM file) and `TCP_TLS_SERVER_NAME` are defaults for
   * connects that ask for TLS. A value that does not parse is a
   * `ConfigError`; a negative timeout, or a CA file that cannot be read or
   * holds no certificate, `InvalidArgument`.
   *
   * @example
   * ```ts
   * import { TcpClient } from "effect-tcp"
   * const Client = TcpClient.TcpClient.layerConfig // TCP_CONNECT_TIMEOUT="2 seconds"
   * ```
   * @since 0.1.0
   */
  static readonly layerConfig: Layer.Layer<
    TcpClient,
    Config.ConfigError | TcpError.InvalidArgument,
    TcpStorage
  > = Layer.unwrap(
    Effect.gen(function*() {
      const timeout = yield* Config.option(Config.Duration("TCP_CONNECT_TIMEOUT"))
      const caFile = yield* Config.option(Config.String("TCP_TLS_CA_FILE"))
      const serverName = yield* Config.option(Config.String("TCP_TLS_SERVER_NAME"))
      const ca = Option.isSome(caFile) ? yield* readPem(caFile.value, "TcpClient.layerConfig") : undefined
      const tls = ca === undefined && Option.isNone(serverName)
        ? undefined
        : { ca, serverName: Option.getOrUndefined(serverName) }
      return layerWith({ connectTimeout: Option.getOrUndefined(timeout), tls })
    })
  )
}

/**
 * Defaults for the client's calls.
 *
 * @example
 * ```ts
 * import type { TcpClient } from "effect-tcp"
 * const defaults: TcpClient.ClientDefaults = { connectTimeout: "5 seconds" }
 * ```
 * @since 0.1.0
 */
export interface ClientDefaults {
  readonly connectTimeout?: Duration.Input | undefined
  /**
   * Defaults for connects that ask for TLS (`tls` in their options), under
   * the connect's own: a private CA for every TLS peer, say. A connect
   * without `tls` stays plaintext.
   */
  readonly tls?: TcpTls.ClientOptions | undefined
}

/**
 * `TcpClient.layerWith`: without defaults it cannot fail; with defaults,
 * ones that are not valid fail the layer with `InvalidArgument`.
 *
 * @example
 * ```ts
 * import type { Layer } from "effect"
 * import { TcpClient, TcpError, TcpStorage } from "effect-tcp"
 * const client: Layer.Layer<TcpClient.TcpClient, TcpError.InvalidArgument, TcpStorage.TcpStorage> =
 *   TcpClient.layerWith({ connectTimeout: "3 seconds" })
 * ```
 * @since 0.1.0
 */
export interface LayerWithConstructor {
  (): Layer.Layer<TcpClient, never, TcpStorage>
  (defaults: ClientDefaults | undefined): Layer.Layer<TcpClient, TcpError.InvalidArgument, TcpStorage>
}

function clientLayer(): Layer.Layer<TcpClient, never, TcpStorage>
function clientLayer(defaults: ClientDefaults | undefined): Layer.Layer<TcpClient, TcpError.InvalidArgument, TcpStorage>
function clientLayer(defaults?: ClientDefaults): Layer.Layer<TcpClient, TcpError.InvalidArgument, TcpStorage> {
  return Layer.effect(
    TcpClient,
    Effect.gen(function*() {
      const { connectTimeout } = yield* Effect.fromResult(resolveClient(defaults, "TcpClient.layer"))
      const tlsDefaults = defaults?.tls
      if (tlsDefaults !== undefined) yield* Effect.fromResult(prepareOnce(tlsDefaults, "client", "TcpClient.layer", undefined))
      const pool = yield* poolOf(yield* TcpStorage)
      const resolver = yield* Effect.serviceOption(AddressResolver.AddressResolver).pipe(
        Effect.flatMap(Option.match({
          onSome: Effect.succeed,
          onNone: () => AddressResolver.AddressResolver.use(Effect.succeed).pipe(Effect.provide(systemResolver))
        }))
      )
      return make(pool, resolver, connectTimeout, tlsDefaults)
    })
  )
}

/** A PEM file's text, read when a layer is built. */
const readPem = (path: string, syscall: string): Effect.Effect<string, TcpError.InvalidArgument> =>
  Effect.try({
    try: () => readFileSync(path, "utf8"),
    catch: (cause) =>
      TcpError.invalid(syscall, `TCP_TLS_CA_FILE ${path} cannot be read: ${cause instanceof Error ? cause.message : String(cause)}`)
  })

/**
 * `TcpClient.TcpClient.layerWith`: the Node client with defaults of your own
 * (`InvalidArgument` when they are not valid).
 *
 * @example
 * ```ts
 * import { TcpClient } from "effect-tcp"
 * const Client = TcpClient.layerWith({ connectTimeout: "3 seconds" })
 * ```
 * @since 0.1.0
 */
export const layerWith: LayerWithConstructor = clientLayer

/**
 * `TcpClient.TcpClient.layerConfig`: the Node client configured from `Config`
 * (`ConfigError` for a value that does not parse, `InvalidArgument` for a
 * negative duration).
 *
 * @example
 * ```ts
 * import { TcpClient } from "effect-tcp"
 * const Client = TcpClient.layerConfig
 * ```
 * @since 0.1.0
 */
export const layerConfig: Layer.Layer<TcpClient, Config.ConfigError | TcpError.InvalidArgument, TcpStorage> =
  TcpClient.layerConfig

const systemResolver = NodeAddressResolver.layer.pipe(Layer.provide(NodeDns.layer))

/**
 * `TcpClient.TcpClient.layer`: the Node client, needing a `TcpStorage`.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { TcpClient, TcpStorage } from "effect-tcp"
 * const Tcp = TcpClient.layer.pipe(Layer.provideMerge(TcpStorage.layer()))
 * ```
 * @since 0.1.0
 */
export const layer: Layer.Layer<TcpClient, never, TcpStorage> = TcpClient.layer

/**
 * Connects to `address` with the `TcpClient` in context (libdill's
 * `tcp_connect`, or `tcp_connect_mem` with `{ storage }`). The socket lives
 * in the current scope.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient } from "effect-tcp"
 * const program = TcpClient.connect("127.0.0.1:6379", { timeout: "1 second" }).pipe(
 *   Effect.catchTags({
 *     ConnRefused: () => Effect.succeed(null),
 *     TimedOut: () => Effect.succeed(null)
 *   })
 * )
 * ```
 * @since 0.1.0
 */
export function connect(
  address: TcpAddress,
  options?: ConnectOptions & { readonly tls?: undefined }
): Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError, TcpClient | Scope.Scope>
/**
 * Connects with TLS (or options that may carry it): the call may also fail
 * with `TlsHandshakeFailed` or `CertificateRejected`.
 *
 * @example
 * ```ts
 * import { TcpClient } from "effect-tcp"
 * const secure = TcpClient.connect("localhost:6380", { tls: { serverName: "localhost" }, timeout: "2 seconds" })
 * ```
 * @since 0.1.0
 */
export function connect(
  address: TcpAddress,
  options?: ConnectOptions
): Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError | TcpError.TlsError, TcpClient | Scope.Scope>
export function connect(
  address: TcpAddress,
  options?: ConnectOptions
): Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError | TcpError.TlsError, TcpClient | Scope.Scope> {
  return TcpClient.use((client) => client.connect(address, options))
}

/**
 * Options for `pool`: how many connections at most (`size`), how long an
 * idle one stays open (`idleTimeout`; it closes between that and twice
 * that; none: until the pool's scope ends), and the settings every
 * connection is made with. Deadlines are given per `get`.
 *
 * @example
 * ```ts
 * import type { TcpClient } from "effect-tcp"
 * const options: TcpClient.PoolOptions = { size: 4, idleTimeout: "30 seconds", noDelay: true }
 * ```
 * @since 0.1.0
 */
export interface PoolOptions extends Omit<ConnectOptions, "deadline" | "timeout" | "storage"> {
  readonly size: number
  readonly idleTimeout?: Duration.Input | undefined
}

/**
 * A snapshot of a pool: connections `open` (`idle` + `inUse`), callers
 * `waiting` for one, and since the pool began: connections `created`, uses
 * served by an idle connection (`reused`), and connections closed because
 * they could not be reused (`discarded`: left unclean or failed by a use,
 * or found closed by the peer while idle).
 *
 * @example
 * ```ts
 * import type { TcpClient } from "effect-tcp"
 * const reuseRate = (s: TcpClient.PoolStats) => s.reused / Math.max(1, s.reused + s.created)
 * ```
 * @since 0.1.0
 */
export type PoolStats = ConnectionPoolStats

/**
 * Connections to one peer kept open between uses (see `pool`).
 *
 * `get` lends an idle connection, or makes a new one, for the current
 * scope; with `size` connections lent it waits, within its deadline
 * (`TimedOut`; `0` or a past deadline never waits). When the scope ends
 * after success and the socket is clean (nothing unread, not half-closed,
 * no failed direction) it goes back to the pool, otherwise it is closed.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { TcpClient } from "effect-tcp"
 * const ping = (pool: TcpClient.ConnectionPool) =>
 *   Effect.scoped(Effect.gen(function*() {
 *     const socket = yield* pool.get({ timeout: "1 second" })
 *     yield* socket.send(new TextEncoder().encode("PING\r\n"))
 *     return yield* socket.recvUntil("\r\n")
 *   }))
 * ```
 * @since 0.1.0
 */
export interface ConnectionPool<E = TcpError.ConnectError> {
  readonly get: (options?: Deadline.Options) => Effect.Effect<TcpSocket.TcpSocket, E, Scope.Scope>
  readonly stats: Effect.Effect<PoolStats>
}

/**
 * A pool of connections to `address`, open for the current scope, built on
 * effect's `Pool`: sequential uses share one connection, at most `size` are
 * open at once, a connection a use left unclean or failed is closed rather
 * than lent again, and one the peer closed or reset while idle is dropped,
 * never handed out. Opening it cannot fail (DESIGN.md: `never`): when
 * `size` is not a positive integer or `idleTimeout` not a positive
 * duration, every `get` fails with that `InvalidArgument` (it is one of
 * `ConnectError`'s tags) and nothing is ever connected.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpNode } from "effect-tcp"
 * const program = Effect.gen(function*() {
 *   const pool = yield* TcpClient.pool("127.0.0.1:6379", { size: 2, idleTimeout: "30 seconds" })
 *   for (let i = 0; i < 3; i++) {
 *     yield* Effect.scoped(Effect.gen(function*() {
 *       const socket = yield* pool.get({ timeout: "1 second" })
 *       yield* socket.send(new TextEncoder().encode("PING\r\n"))
 *       yield* socket.recvUntil("\r\n")
 *     }))
 *   }
 *   return yield* pool.stats // { created: 1, reused: 2, ... }
 * }).pipe(Effect.scoped, Effect.provide(TcpNode.layer))
 * ```
 * @since 0.1.0
 */
export const pool = <const Options extends PoolOptions>(
  address: TcpAddress,
  options: Options
): Effect.Effect<ConnectionPool<ConnectErrorOf<Options>>, never, TcpClient | Scope.Scope> =>
  TcpClient.use((client) =>
    makeConnectionPool(client.connect as (to: TcpAddress, options: ConnectOptions) => ReturnType<Connect>, address, options)
      .pipe(
        // `ConnectErrorOf<Options>` always holds `ConnectError`, which TypeScript cannot see through the condition.
        Effect.map((lender) => lender as ConnectionPool<ConnectErrorOf<Options>>),
        Effect.catch((invalid) => Effect.succeed(refusingPool(invalid) as ConnectionPool<ConnectErrorOf<Options>>))
      )
  )

/** A pool whose options were not valid: every `get` says so, and it holds nothing. */
const refusingPool = (invalid: TcpError.InvalidArgument): ConnectionPool => ({
  get: () => Effect.fail(invalid),
  stats: Effect.succeed({ open: 0, idle: 0, inUse: 0, waiting: 0, created: 0, reused: 0, discarded: 0 })
})

/**
 * Adopts an already-connected descriptor (libdill's `tcp_fromfd`), e.g. one
 * inherited from a parent process.
 *
 * @example
 * ```ts
 * import { TcpClient } from "effect-tcp"
 * TcpClient.fromFd(3)
 * ```
 * @since 0.1.0
 */
export const fromFd = (
  fd: number,
  options?: FromFdOptions
): Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError, TcpClient | Scope.Scope> =>
  TcpClient.use((client) => client.fromFd(fd, options))

/**
 * Effect's own `effect/socket` `Socket`, connecting through the `TcpClient`
 * in context: like `NodeSocket.makeNet`, each acquisition of its reader
 * opens a connection in the reader's scope (a failed connect is a
 * `SocketOpenError`, `"Timeout"` for `TimedOut`, with the tagged error as
 * its cause), and its writer writes to the open one. Closing the reader's
 * scope fails a pull waiting then with `SocketCloseError` 1006 and closes
 * the connection. See `TcpSocket.toSocket` for the rest of the mapping.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Socket } from "effect/socket"
 * import { TcpClient, TcpNode } from "effect-tcp"
 * const program = Effect.gen(function*() {
 *   const socket = yield* TcpClient.makeSocket("127.0.0.1:7000", { timeout: "2 seconds" })
 *   yield* Socket.toStream(socket).pipe(Stream.runForEach(Effect.log))
 * }).pipe(Effect.provide(TcpNode.layer))
 * ```
 * @since 0.1.0
 */
export const makeSocket = (
  address: TcpAddress,
  options?: ConnectOptions
): Effect.Effect<Socket.Socket, never, TcpClient> =>
  TcpClient.use((client) =>
    Effect.sync(() => {
      let current: TcpSocket.TcpSocket | undefined
      const open = Latch.makeUnsafe(false)
      const reader = Effect.gen(function*() {
        const socket = yield* client.connect(address, options).pipe(
          Effect.mapError((cause) =>
            new Socket.SocketError({
              reason: new Socket.SocketOpenError({ kind: cause._tag === "TimedOut" ? "Timeout" : "Unknown", cause })
            })
          )
        )
        current = socket
        open.openUnsafe()
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            current = undefined
            open.closeUnsafe()
          })
        )
        return yield* socketReader(socket)
      })
      // Writes go to whichever connection the reader opened, once it has.
      const connected = open.whenOpen(Effect.suspend(() =>
        current === undefined
          ? Effect.fail(
            new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause: new Error("socket closed") }) })
          )
          : Effect.succeed(socketWriter(current))
      ))
      const writer = Effect.acquireRelease(
        Effect.succeed<Socket.Writer>({
          write: (chunk) => Effect.flatMap(connected, (writer) => writer.write(chunk)),
          writeAll: (chunks) => Effect.flatMap(connected, (writer) => writer.writeAll(chunks))
        }),
        () => current === undefined ? Effect.void : Effect.ignore(current.done())
      )
      return Socket.make({ reader, writer })
    })
  )

/**
 * A layer providing `effect/socket`'s `Socket` service over effect-tcp: the
 * one-layer swap for `NodeSocket.layerNet` in a `Socket`-based program.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { TcpClient, TcpNode } from "effect-tcp"
 * // before: NodeSocket.layerNet({ host: "127.0.0.1", port: 7000 })
 * const SocketLive = TcpClient.layerSocket("127.0.0.1:7000").pipe(Layer.provide(TcpNode.layer))
 * ```
 * @since 0.1.0
 */
export const layerSocket = (
  address: TcpAddress,
  options?: ConnectOptions
): Layer.Layer<Socket.Socket, never, TcpClient> => Layer.effect(Socket.Socket, makeSocket(address, options))

/** What `localAddress` / `localPort` ask Node to bind, checked. */
const localBinding = (
  options: ConnectOptions | undefined,
  text: string
): Result.Result<
  { readonly bind: { localAddress?: string; localPort?: number }; readonly family: Family | undefined } | undefined,
  TcpError.InvalidArgument
> => {
  const localAddress = options?.localAddress
  const localPort = options?.localPort
  if (localAddress === undefined && localPort === undefined) return Result.succeed(undefined)
  if (localPort !== undefined && !(Number.isSafeInteger(localPort) && localPort >= 0 && localPort <= 65535)) {
    return Result.fail(TcpError.invalid("connect", portRange("localPort", true), text))
  }
  if (localAddress === undefined) return Result.succeed({ bind: { localPort }, family: undefined })
  const ip = typeof localAddress === "string" ? NetAddress.ipFromString(localAddress) : undefined
  if (ip === undefined || Result.isFailure(ip)) {
    return Result.fail(TcpError.invalid("connect", "localAddress must be an IP address", text))
  }
  const family = NetAddress.isIpv4Address(ip.success) ? "ipv4" : "ipv6"
  const bind = { localAddress: NetAddress.formatIp(ip.success), ...(localPort === undefined ? {} : { localPort }) }
  return Result.succeed({ bind, family })
}

/** The options that are set: an `undefined` one leaves the default in place. */
const definedOnly = <A extends object>(options: A): Partial<A> =>
  Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<A>

/** The call's own deadline or timeout, else the client's default timeout. */
const withDefaultTimeout = (
  options: ConnectOptions | undefined,
  timeout: Duration.Input | undefined
): Deadline.Options | undefined =>
  timeout === undefined || options?.deadline !== undefined || options?.timeout !== undefined
    ? options
    : { timeout }

const isFamily = (u: unknown): u is Family => u === "ipv4" || u === "ipv6" || u === "any"

/**
 * RFC 8305: each attempt after the first starts `delay` after the one
 * before it, or as soon as that one failed; the first success wins and the
 * attempts still running are interrupted (and so closed). Fails only when
 * every attempt failed, with the first failure first.
 */
const staggered = <A, E>(
  targets: Arr.NonEmptyReadonlyArray<NetAddress.InetAddress>,
  attempt: (target: NetAddress.InetAddress) => Effect.Effect<A, E>,
  delay: Duration.Duration
): Effect.Effect<A, E> => {
  const from = (i: number, target: NetAddress.InetAddress): Effect.Effect<A, E> => {
    const next = targets[i + 1]
    if (next === undefined) return attempt(target)
    const failed = Deferred.makeUnsafe<void>()
    return Effect.raceAll([
      Effect.tapError(attempt(target), () => Deferred.done(failed, Exit.void)),
      Effect.raceFirst(Effect.sleep(delay), Deferred.await(failed)).pipe(Effect.andThen(from(i + 1, next)))
    ])
  }
  return Effect.suspend(() => from(0, Arr.headNonEmpty(targets)))
}

/** Orders addresses for happy eyeballs: families alternate, starting with the first one's. */
const interleaved = (
  targets: Arr.NonEmptyReadonlyArray<NetAddress.InetAddress>
): Arr.NonEmptyReadonlyArray<NetAddress.InetAddress> => {
  const first = Arr.headNonEmpty(targets)
  const same = targets.filter((t) => t._tag === first._tag)
  const other = targets.filter((t) => t._tag !== first._tag)
  const out: Array<NetAddress.InetAddress> = []
  for (let i = 0; i < Math.max(same.length, other.length); i++) {
    const a = same[i]
    const b = other[i]
    if (a !== undefined) out.push(a)
    if (b !== undefined) out.push(b)
  }
  return Arr.isReadonlyArrayNonEmpty(out) ? out : targets
}

const happyDelay = (input: boolean | Duration.Input | undefined): Option.Option<Duration.Duration> | undefined => {
  if (input === undefined || input === false) return undefined
  if (input === true) return Option.some(Duration.millis(250))
  return Option.filter(checkedDuration(input), Duration.isFinite)
}

/** Tries `targets` in order; the first success wins, else the first error. */
const firstSuccess = <A, E>(
  targets: Arr.NonEmptyReadonlyArray<NetAddress.InetAddress>,
  attempt: (target: NetAddress.InetAddress) => Effect.Effect<A, E>
): Effect.Effect<A, E> =>
  targets.slice(1).reduce<Effect.Effect<A, E>>(
    (previous, target) => Effect.catch(previous, (first) => Effect.mapError(attempt(target), () => first)),
    attempt(Arr.headNonEmpty(targets))
  )

const make = (
  pool: Pool,
  resolver: AddressResolver.AddressResolver["Service"],
  connectTimeout: Duration.Input | undefined,
  tlsDefaults: TcpTls.ClientOptions | undefined
): TcpClient["Service"] => {
  // A connect's TLS options under the layer's defaults, merged once per options object (so their certificates are parsed once).
  const merged = new WeakMap<TcpTls.ClientOptions, TcpTls.ClientOptions>()
  const withTlsDefaults = (tls: TcpTls.ClientOptions): TcpTls.ClientOptions => {
    if (tlsDefaults === undefined || typeof tls !== "object" || tls === null) return tls
    const known = merged.get(tls)
    if (known !== undefined) return known
    const options = { ...tlsDefaults, ...definedOnly(tls) }
    merged.set(tls, options)
    return options
  }
  /**
   * Runs `open` for a connection living in `slot`; on success the socket
   * goes to the current scope, on failure or interruption the slot goes back.
   */
  const adopt = <E>(
    slot: SlotMemory,
    closeTimeout: Duration.Duration,
    open: Effect.Effect<CoreConnection, E>
  ): Effect.Effect<TcpSocket.TcpSocket, E, Scope.Scope> =>
    Effect.uninterruptibleMask((restore) =>
      restore(open).pipe(
        Effect.onExit((exit) => Exit.isFailure(exit) ? Effect.sync(() => unclaim(slot)) : Effect.void),
        Effect.flatMap((conn) => {
          conn.releaseSlot = () => unclaim(slot)
          return attach(conn, closeTimeout, pool)
        })
      )
    )

  const connect = Effect.fn("TcpClient.connect")(
    (
      address: TcpAddress,
      options?: ConnectOptions
    ): Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError | TcpError.TlsError, Scope.Scope> => {
      // Checked without an effect or a step of the fiber each: only a
      // timeout (the clock) and a name (the resolver) need one.
      const checked = destination(address, "connect")
      if (Result.isFailure(checked)) return Effect.fail(checked.failure)
      const { endpoint, hostName, literal, text } = checked.success
      const resolvedSettings = resolveSettings(options, "connect", text)
      if (Result.isFailure(resolvedSettings)) return Effect.fail(resolvedSettings.failure)
      const settings = resolvedSettings.success
      const binding = localBinding(options, text)
      if (Result.isFailure(binding)) return Effect.fail(binding.failure)
      const local = binding.success
      const family = local?.family ?? orDefault(options?.family, "any")
      if (!isFamily(family)) return Effect.fail(TcpError.invalid("connect", `family must be "ipv4", "ipv6" or "any"`, text))
      if (local?.family !== undefined && options?.family !== undefined && options.family !== "any" && options.family !== family) {
        return Effect.fail(TcpError.invalid("connect", `localAddress is not an ${options.family} address`, text))
      }
      const prepared = options?.tls === undefined
        ? undefined
        : prepareOnce(withTlsDefaults(options.tls), "client", "connect", text)
      if (prepared !== undefined && Result.isFailure(prepared)) return Effect.fail(prepared.failure)
      const tls = prepared?.success
      const bound = withDefaultTimeout(options, connectTimeout)

      /** Connects to `targets` (checked, resolved) within `deadline`. */
      const connectTo = (
        deadline: Deadline.Deadline,
        targets: Arr.NonEmptyReadonlyArray<NetAddress.InetAddress>,
        happy: Option.Some<Duration.Duration> | undefined
      ): Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError | TcpError.TlsError, Scope.Scope> => {
        /** A connection in `slot` with the call's settings, not yet connected; where to connect it. */
        const unconnected = (target: NetAddress.InetAddress, slot: SlotMemory) => {
          const known = literal !== undefined && target === literal.targets[0] ? literal : undefined
          const conn = nodeConnection(slot, known?.text ?? NetAddress.formatInet(target), () => {}, {})
          applySettings(conn.transport.socket, settings)
          const host = known?.host ?? nodeHost(target)
          const to = local === undefined ? { host, port: target.port } : { host, port: target.port, ...local.bind }
          return { conn, to }
        }

        if (tls === undefined && targets.length === 1) {
          // One address, no TLS: the slot, the connection and the socket in
          // one uninterruptible step around the only wait, the handshake. A
          // failure aborts the connection, then gives the slot back.
          const target = targets[0]
          return Effect.uninterruptibleMask((restore) => {
            const start = (slot: SlotMemory): Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError, Scope.Scope> => {
              let made: ReturnType<typeof unconnected>
              try {
                made = unconnected(target, slot)
              } catch (defect) {
                unclaim(slot)
                return Effect.die(defect)
              }
              const { conn, to } = made
              return Effect.flatMap(
                Effect.onExit(
                  restore(connectSocket(conn, to, deadline)),
                  (exit) => Exit.isFailure(exit) ? Effect.andThen(conn.abort, Effect.sync(() => unclaim(slot))) : Effect.void
                ),
                () => {
                  conn.releaseSlot = () => unclaim(slot)
                  return attach(conn, settings.closeTimeout, pool)
                }
              )
            }
            const slot = claimNow(pool, options?.storage)
            return slot !== undefined
              ? start(slot)
              : Effect.flatMap(restore(claim(pool, options?.storage, deadline, "connect", text)), start)
          })
        }

        // An attempt in a race (`opened` given) shares the slot with the
        // others, so it stays paused (reads nothing into it) until it has won.
        const attempt = (target: NetAddress.InetAddress, slot: SlotMemory, opened?: Array<Connection>) =>
          Effect.uninterruptibleMask((restore) =>
            Effect.suspend(() => {
              const { conn, to } = unconnected(target, slot)
              if (opened !== undefined) {
                conn.transport.socket.pause()
                opened.push(conn)
              }
              return restore(connectSocket(conn, to, deadline)).pipe(
                Effect.onExit((exit) => Exit.isFailure(exit) ? conn.abort : Effect.void),
                Effect.as(conn)
              )
            })
          )
        // When the race is over every attempt has ended. Each connection but
        // the winner's is closed then: also one that connected just after the
        // winner, whose success the race drops.
        const race = (slot: SlotMemory, delay: Duration.Duration): Effect.Effect<Connection, TcpError.ConnectError> =>
          Effect.suspend(() => {
            const opened: Array<Connection> = []
            return staggered(interleaved(targets), (t) => attempt(t, slot, opened), delay).pipe(
              Effect.onExit((exit) =>
                Effect.forEach(opened, (conn) => Exit.isSuccess(exit) && exit.value === conn ? Effect.void : conn.abort, {
                  discard: true
                })
              ),
              // Starts the winner's reads, as Node does for a socket that connects unpaused.
              Effect.tap((winner) => Effect.sync(() => winner.transport.socket.read(0)))
            )
          })
        const connected = (slot: SlotMemory): Effect.Effect<Connection, TcpError.ConnectError> =>
          happy === undefined || targets.length === 1
            ? firstSuccess(targets, (t) => attempt(t, slot))
            : race(slot, happy.value)
        // TLS within the same deadline, over the connection that won.
        const open = (slot: SlotMemory): Effect.Effect<CoreConnection, TcpError.ConnectError | TcpError.TlsError> =>
          tls === undefined ? connected(slot) : Effect.flatMap(connected(slot), (conn) =>
            upgradeConnection(conn, "client", tls, hostName, deadline, "connect").pipe(
              Effect.mapError(reportedAs(TcpError.connectTags)),
              // The TLS connection closes itself when its handshake fails; this only matters if the handover did.
              Effect.onExit((exit) => Exit.isFailure(exit) ? conn.abort : Effect.void)
            ))

        return Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(
            restore(claim(pool, options?.storage, deadline, "connect", text)),
            (slot) => adopt(slot, settings.closeTimeout, restore(open(slot)))
          )
        )
      }
      const resolved = (deadline: Deadline.Deadline, targets: Arr.NonEmptyReadonlyArray<NetAddress.InetAddress>) =>
        Effect.withFiber((fiber) => {
          annotateSpan(fiber, "tcp.address", text)
          const happy = happyDelay(options?.happyEyeballs)
          if (happy !== undefined && Option.isNone(happy)) {
            return Effect.fail(TcpError.invalid("connect", "happyEyeballs must be a boolean or a duration", text))
          }
          return connectTo(deadline, targets, happy)
        })
      const within = (deadline: Deadline.Deadline) =>
        // An IP literal any family may have is its own (only) target: no resolver.
        literal !== undefined && family === "any"
          ? resolved(deadline, literal.targets)
          : Effect.flatMap(resolve(endpoint, resolver, family, deadline, "connect"), (targets) => resolved(deadline, targets))

      // No deadline and no timeout: nothing to check and no clock to read.
      return bound?.deadline === undefined && bound?.timeout === undefined
        ? within(Deadline.never)
        : Effect.flatMap(Deadline.resolve(bound, "connect", text), within)
    },
    (effect) => observed("connect", effect, pool)
  )

  const fromFd = Effect.fn("TcpClient.fromFd")(function*(fd: number, options?: FromFdOptions) {
    const text = `fd ${String(fd)}`
    if (!isDescriptor(fd)) return yield* TcpError.invalid("fromFd", badDescriptor, text)
    const settings = yield* Effect.fromResult(resolveSettings(options, "fromFd", text))
    const deadline = yield* Deadline.resolve(options, "fromFd", text)
    if ((yield* isTcpDescriptor(fd)) === false) return yield* TcpError.invalid("fromFd", "fd is not a TCP socket", text)
    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(claim(pool, options?.storage, deadline, "fromFd", text)), (slot) =>
        adopt(
          slot,
          settings.closeTimeout,
          Effect.try({
            try: () => {
              const conn = nodeConnection(slot, text, () => {}, { fd, readable: true, writable: true })
              applySettings(conn.transport.socket, settings)
              conn.address = peerOf(conn.transport.socket) ?? text
              return conn
            },
            catch: (cause) =>
              Reflect.get(Object(cause), "code") === "ERR_INVALID_FD_TYPE"
                ? TcpError.invalid("fromFd", "fd is not a TCP socket", text)
                : TcpError.narrow(TcpError.fromUnknown(cause, "fromFd", text), TcpError.connectTags)
          })
        ))
    )
  })

  // One implementation behind `Connect`'s two signatures: its error is a TLS error only with `tls`.
  return TcpClient.of({ connect: connect as Connect, fromFd })
}
