/**
 * An in-memory `TcpClient` for testing applications: no sockets, no
 * descriptors, no timers but Effect's `Clock`.
 *
 * `TcpTest.layer` provides the same `TcpClient.TcpClient` service the
 * application already uses (so its code does not change), a real
 * `TcpStorage` pool (so `TcpStorage.stats` keeps working and counts the
 * in-memory sockets), and the `TcpTest` control service, with which a test
 * plays the other end of every connection:
 *
 * - `TcpTest.listen(address)` opens an in-memory listener; its `accept`
 *   yields the peer side of each connection the application makes. A
 *   connect completes when the test accepts it (or at once while fewer than
 *   `backlog` connections wait), so a listener nobody accepts from makes the
 *   application's connect fail with `TimedOut` at its deadline.
 * - A connect to an address nobody listens on fails with `ConnRefused`;
 *   `TcpTest.failConnect(address, error, { times })` makes connects fail
 *   with any `ConnectError`.
 * - The peer sends bytes to the application, receives exactly what it sent,
 *   half-closes (`end`: the application's receive gets `PeerClosed` with the
 *   bytes that did arrive), resets (`reset`: the application's next receive or
 *   send fails with `ConnReset`), and injects any error the application's
 *   next `send`, `recv`, `done` or `close` can produce (`failNext`).
 *
 * The application's sockets follow the library's semantics: exact-length
 * receives, `BrokenPipe` after `done`, graceful close waiting for the peer's
 * FIN within its deadline, `Closed` after close or abort, deadlines (`0`,
 * `-1`, absolute, `timeout`) on Effect's `Clock`, so `TestClock` drives them
 * and tests are deterministic.
 *
 * Only the client side is replaced: `TcpListener.listen` is a plain function
 * of the library, not a service, so servers written with it still need real
 * sockets.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Exit, Inspectable, Layer, Result, Scope } from "effect"
import { Host, NetAddress } from "effect/net"
import { pipeArguments } from "effect/Pipeable"
import { kMaxLength } from "node:buffer"
import * as Deadline from "./Deadline.ts"
import { describe as describeAddress, parse } from "./internal/address.ts"
import { gather, isBytes } from "./internal/bytes.ts"
import { Connection, type Injector } from "./internal/core/connection.ts"
import { Pipe, Side } from "./internal/memory/transport.ts"
import { isCount, listenSettings, resolveSettings } from "./internal/options.ts"
import { claim, type Pool, unclaim } from "./internal/pool.ts"
import { poolOf } from "./internal/storage.ts"
import { attach } from "./internal/tcpSocket.ts"
import { prepareOnce, reportedAs, upgradeConnection } from "./internal/tls.ts"
import { awaitEvent, Gate } from "./internal/wait.ts"
import * as TcpClient from "./TcpClient.ts"
import * as TcpError from "./TcpError.ts"
import * as TcpListener from "./TcpListener.ts"
import * as TcpSocket from "./TcpSocket.ts"
import * as TcpStorage from "./TcpStorage.ts"

// ------------------------------------------------------------- public types

/**
 * The errors a test can inject into each of the application's socket calls:
 * exactly what that call can fail with (`send` covers `sendv`, `recv` covers
 * `recvInto` and `recvv`).
 *
 * @example
 * ```ts
 * import { TcpError } from "effect-tcp"
 * import type { TcpTest } from "effect-tcp"
 * const e: TcpTest.Injectable["recv"] = TcpError.peerClosed("recv", new Uint8Array(0))
 * ```
 * @since 0.1.0
 */
export interface Injectable {
  readonly send: TcpError.SendError
  readonly recv: TcpError.RecvError
  /** `recvUntil`, whose errors include `MessageTooLarge`. */
  readonly recvUntil: TcpError.RecvUntilError
  readonly done: TcpError.SendError
  readonly close: TcpError.CloseError
}

/**
 * A socket call an error can be injected into: `"send"`, `"recv"`, `"done"`
 * or `"close"`.
 *
 * @example
 * ```ts
 * import type { TcpTest } from "effect-tcp"
 * const op: TcpTest.Operation = "recv"
 * ```
 * @since 0.1.0
 */
export type Operation = keyof Injectable

/**
 * Options for `listen`.
 *
 * - `backlog` (default `0`): how many connections complete their handshake
 *   before the test accepts them, like the kernel's queue. With `0` every
 *   connect waits for `accept`, so a connection is never used before the test
 *   holds its peer; connects beyond the backlog wait (and time out) as SYNs
 *   to a full queue do.
 * - `window` (default unbounded): how many bytes the application may have
 *   sent that the peer has not received yet; past it the application's `send`
 *   waits for the peer to receive (and times out if it never does).
 *
 * @example
 * ```ts
 * import type { TcpTest } from "effect-tcp"
 * const options: TcpTest.ListenOptions = { backlog: 8, window: 64 * 1024 }
 * ```
 * @since 0.1.0
 */
export interface ListenOptions {
  readonly backlog?: number | undefined
  readonly window?: number | undefined
}

/**
 * Options for `failConnect`: how many connects fail (default: every one).
 *
 * @example
 * ```ts
 * import type { TcpTest } from "effect-tcp"
 * const twice: TcpTest.FailOptions = { times: 2 }
 * ```
 * @since 0.1.0
 */
export interface FailOptions {
  readonly times?: number | undefined
}

/**
 * What the application did with its end of a connection:
 *
 * - `"open"`: nothing yet;
 * - `"done"`: it half-closed (`done`), and still receives;
 * - `"closing"`: it closes (its `close`, or its scope ended) and waits for
 *   the peer's FIN;
 * - `"closed"`: it closed gracefully;
 * - `"aborted"`: it aborted (`abort`, a failed close, a scope that failed or
 *   was interrupted, a close that timed out).
 *
 * @example
 * ```ts
 * import type { TcpTest } from "effect-tcp"
 * const finished = (state: TcpTest.AppState) => state === "closed" || state === "aborted"
 * ```
 * @since 0.1.0
 */
export type AppState = "open" | "done" | "closing" | "closed" | "aborted"

/**
 * A snapshot of a connection, seen from the peer.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { TcpTest } from "effect-tcp"
 * declare const peer: TcpTest.Peer
 * Effect.map(peer.status, (s: TcpTest.Status) => s.app === "closed" && s.unread === 0)
 * ```
 * @since 0.1.0
 */
export interface Status {
  /** What the application did with its end. */
  readonly app: AppState
  /** Bytes the application sent that the peer has not received. */
  readonly unread: number
  /** Bytes the peer sent that the application has not received. */
  readonly undelivered: number
}

/**
 * The test's end of one connection the application made: a scripted peer.
 * It needs no scope: the connection ends with the application's socket.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpTest } from "effect-tcp"
 * const echoOnce = Effect.gen(function*() {
 *   const server = yield* TcpTest.listen("127.0.0.1:7000")
 *   const peer = yield* server.accept()
 *   yield* peer.send(yield* peer.recv(5))
 *   yield* peer.end
 * })
 * ```
 * @since 0.1.0
 */
export interface Peer {
  /** The listener's address, where it is a literal. */
  readonly localAddress: NetAddress.InetAddress | undefined
  /** The application's end (`127.0.0.1` or `::1`, an ephemeral port). */
  readonly remoteAddress: NetAddress.InetAddress | undefined
  /**
   * Delivers bytes (a string is sent as UTF-8) to the application. Never
   * waits. Bytes sent while the application is closing are discarded, as its
   * close does. Fails with `BrokenPipe` after `end` or once the application's
   * socket is gone (`ConnReset` if it aborted with unread bytes), `Closed`
   * after `reset`.
   */
  send(data: Uint8Array | string): Effect.Effect<void, TcpError.SendError>
  /**
   * Receives exactly `n` bytes of what the application sent, waiting within
   * the deadline (on Effect's `Clock`). `PeerClosed` (with the bytes that
   * did arrive) once the application finished sending, `ConnReset` if it
   * aborted with unread bytes. A receive that times out or is interrupted
   * consumes nothing.
   */
  recv(n: number, options?: Deadline.Options): Effect.Effect<Uint8Array, TcpError.RecvError>
  /**
   * Receives everything the application sends until it finishes sending
   * (`done`, `close`, or its scope's end), waiting within the deadline.
   */
  recvAll(options?: Deadline.Options): Effect.Effect<Uint8Array, TcpError.RecvError>
  /** Half-closes (FIN): the application receives what was sent, then `PeerClosed`. Always succeeds. */
  readonly end: Effect.Effect<void>
  /**
   * Resets the connection (RST): bytes in flight either way are lost and the
   * application's next `recv`, `send`, `done` or `close` fails with
   * `ConnReset`. Always succeeds.
   */
  readonly reset: Effect.Effect<void>
  /**
   * Makes the application's next call of kind `op` on this connection fail
   * with `error`, without moving any bytes (a `close` failed this way still
   * closes the socket, as a real one does). Injected errors queue in order.
   * A call already waiting is not affected: to have an error in place before
   * the application's first call, use `Listener.failNext`.
   */
  failNext<Op extends Operation>(op: Op, error: Injectable[Op]): Effect.Effect<void>
  /** What the application did with its end, and the bytes in flight. */
  readonly status: Effect.Effect<Status>
}

/**
 * An in-memory listener, from `TcpTest.listen`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpTest } from "effect-tcp"
 * Effect.gen(function*() {
 *   const server = yield* TcpTest.listen("127.0.0.1:0")
 *   const peer = yield* server.accept({ timeout: "1 second" })
 * })
 * ```
 * @since 0.1.0
 */
export interface Listener {
  /** `host:port` (`[v6]:port`) as connects name it. */
  readonly address: string
  /** The port (the one picked when listening on port 0). */
  readonly port: number
  /**
   * The peer side of the next connection, oldest first, waiting within the
   * deadline; completes the application's connect if it still waits.
   * `Closed` once the listener is closed.
   */
  accept(options?: Deadline.Options): Effect.Effect<Peer, TcpError.TimedOut | TcpError.Closed | TcpError.InvalidArgument>
  /**
   * Like `Peer.failNext`, for the next connection this listener establishes:
   * the error is in place before the application's connect returns.
   */
  failNext<Op extends Operation>(op: Op, error: Injectable[Op]): Effect.Effect<void>
  /** Connects waiting to be accepted. */
  readonly pending: Effect.Effect<number>
  /**
   * Stops listening: waiting connects fail with `ConnRefused`, connections
   * established but not accepted are reset, waiting `accept`s fail with
   * `Closed`. Accepted connections go on. Always succeeds.
   */
  readonly close: Effect.Effect<void>
}

// ---------------------------------------------------------------- internals

type Injected = { [K in Operation]: Array<Injectable[K]> }

const noInjections = (): Injected => ({ send: [], recv: [], recvUntil: [], done: [], close: [] })

const moveInjections = (from: Injected, to: Injected): void => {
  to.send.push(...from.send.splice(0))
  to.recv.push(...from.recv.splice(0))
  to.done.push(...from.done.splice(0))
  to.close.push(...from.close.splice(0))
  to.recvUntil.push(...from.recvUntil.splice(0))
}

const utf8 = new TextEncoder()

/** One copy of all the chunks, so the caller may reuse its buffers at once. */
const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0))
  let at = 0
  for (const chunk of chunks) {
    out.set(chunk, at)
    at += chunk.length
  }
  return out
}

const reset = (syscall: string, address: string | undefined, detail?: string): TcpError.ConnReset =>
  TcpError.make(TcpError.ConnReset, "ECONNRESET", syscall, address, detail)

const brokenPipe = (syscall: string, address: string | undefined, detail: string): TcpError.BrokenPipe =>
  TcpError.make(TcpError.BrokenPipe, "EPIPE", syscall, address, detail)


/** A receive in progress: bytes go into `targets` in order until `total`. */
class Fill {
  filled = 0
  readonly targets: ReadonlyArray<Uint8Array>
  readonly total: number
  constructor(targets: ReadonlyArray<Uint8Array>, total: number) {
    this.targets = targets
    this.total = total
  }

  get wanted(): number {
    return this.total - this.filled
  }

  put(bytes: Uint8Array): void {
    let offset = this.filled
    let from = 0
    for (const target of this.targets) {
      if (from === bytes.length) break
      if (offset >= target.length) {
        offset -= target.length
        continue
      }
      const n = Math.min(target.length - offset, bytes.length - from)
      target.set(bytes.subarray(from, from + n), offset)
      from += n
      offset = 0
    }
    this.filled += bytes.length
  }

  /** The bytes received so far, as one array. */
  collect(): Uint8Array {
    return gather(this.targets, this.filled)
  }
}

/** A parsed address: `key` is what listeners and connects are matched on. */
interface Endpoint {
  readonly key: string
  readonly inet: NetAddress.InetAddress | undefined
  readonly hostPort: Host.HostPort | undefined
  readonly port: number
}

const endpointOf = (parsed: NetAddress.InetAddress | Host.HostPort): Endpoint => {
  if (NetAddress.isInetAddress(parsed)) {
    return { key: NetAddress.formatInet(parsed), inet: parsed, hostPort: undefined, port: parsed.port }
  }
  const inet = NetAddress.isIpAddress(parsed.host) ? NetAddress.inetAddressUnsafe(parsed.host, parsed.port) : undefined
  return inet !== undefined
    ? { key: NetAddress.formatInet(inet), inet, hostPort: undefined, port: inet.port }
    : { key: Host.formatHostPort(parsed), inet: undefined, hostPort: parsed, port: parsed.port }
}

/** Parses an address exactly as `TcpClient.connect` and `TcpListener.listen` do. */
const parseEndpoint = (
  address: unknown,
  syscall: string,
  portZero: boolean
): Result.Result<Endpoint, TcpError.InvalidArgument> =>
  Result.map(parse(address as TcpClient.TcpAddress, syscall, portZero), endpointOf)

/** The same endpoint on another port (a listener on port 0). */
const withPort = (endpoint: Endpoint, port: number): Endpoint => {
  if (endpoint.inet !== undefined) {
    return endpointOf(NetAddress.inetAddressUnsafe(endpoint.inet.address, port))
  }
  const hostPort = endpoint.hostPort
  if (hostPort === undefined) return endpoint
  const moved = Host.hostPortFromInput({ host: hostPort.host, port })
  return Result.isSuccess(moved) ? endpointOf(moved.success) : endpoint
}

/** Checks the socket settings `connect` takes, as the real client does; only `closeTimeout` matters in memory. */
const checkSettings = (
  options: TcpClient.ConnectOptions | TcpClient.FromFdOptions | undefined,
  syscall: string,
  address: string
): Result.Result<Duration.Duration, TcpError.InvalidArgument> =>
  Result.map(resolveSettings(options, syscall, address), (settings) => settings.closeTimeout)


/** A positive integer, or unbounded. */
const isLimit = (n: unknown): n is number => n === Number.POSITIVE_INFINITY || isCount(n, 1)

const loopback = (ipv6: boolean, port: number): NetAddress.InetAddress | undefined => {
  const address = NetAddress.inetAddressFromIpString(ipv6 ? "::1" : "127.0.0.1", port)
  return Result.isSuccess(address) ? address.success : undefined
}

/** An error the next `remaining` connects (or accepts) to one address fail with. */
interface Rule<E> {
  readonly error: E
  remaining: number
}

/** Errors waiting for calls to an address, in the order given. */
class Rules<E> {
  private readonly byAddress = new Map<string, Array<Rule<E>>>()

  add(key: string, error: E, times: number): void {
    const rules = this.byAddress.get(key) ?? []
    rules.push({ error, remaining: times })
    this.byAddress.set(key, rules)
  }

  /** The error the next call to `key` fails with, if one waits; it counts as used. */
  take(key: string): E | undefined {
    const rules = this.byAddress.get(key)
    const rule = rules?.[0]
    if (rules === undefined || rule === undefined) return undefined
    rule.remaining -= 1
    if (rule.remaining <= 0) rules.shift()
    if (rules.length === 0) this.byAddress.delete(key)
    return rule.error
  }
}

/**
 * The in-memory network of one layer: listeners by address, connect rules,
 * and one change signal every blocked call waits on. Any state change wakes
 * every waiter, which then checks its own condition again: simple, and tests
 * have few waiters.
 */
class World {
  readonly listeners = new Map<string, ListenerImpl>()
  readonly connectRules = new Rules<TcpError.ConnectError>()
  /** Errors the application's own in-memory servers' accepts fail with. */
  readonly acceptRules = new Rules<TcpError.AcceptError>()
  /** Errors TLS handshakes with a server fail with, either end (`failTls`). */
  readonly tlsRules = new Rules<TcpError.TlsError>()
  live = 0
  private version = 0
  private readonly waiters = new Set<() => void>()
  private nextPort = 49152

  /** The pool behind the layer's `TcpStorage`, whose slots the application's sockets live in. */
  readonly pool: Pool

  constructor(pool: Pool) {
    this.pool = pool
  }

  /** Something changed: every waiter checks again. */
  changed(): void {
    this.version += 1
    if (this.waiters.size === 0) return
    const waiters = [...this.waiters]
    this.waiters.clear()
    for (const wake of waiters) wake()
  }

  /**
   * Runs `attempt` now and after every change until it has an outcome,
   * within `deadline` (Effect's `Clock`): `0` and past deadlines get one
   * attempt. Interruption removes the waiter.
   */
  until<A, E, E2>(
    deadline: Deadline.Deadline,
    onTimeout: () => E2,
    attempt: () => Effect.Effect<A, E> | undefined
  ): Effect.Effect<A, E | E2> {
    const loop: Effect.Effect<A, E | E2> = Effect.suspend(() => {
      const seen = this.version
      const outcome = attempt()
      if (outcome !== undefined) return outcome
      return Effect.flatMap(this.changeSince(seen, deadline, onTimeout), () => loop)
    })
    return loop
  }

  private changeSince<E2>(seen: number, deadline: Deadline.Deadline, onTimeout: () => E2): Effect.Effect<void, E2> {
    return awaitEvent<void, never, E2>(deadline, onTimeout, (resume) => {
      if (this.version !== seen) {
        resume(Effect.void)
        return () => {}
      }
      const wake = () => resume(Effect.void)
      this.waiters.add(wake)
      return () => {
        this.waiters.delete(wake)
      }
    })
  }

  /** A free ephemeral port: `free(port)` says whether a listener may take it. */
  ephemeral(free: (port: number) => boolean = () => true): number | undefined {
    for (let tries = 0; tries < 16384; tries++) {
      const port = this.nextPort
      this.nextPort = port === 65535 ? 49152 : port + 1
      if (free(port)) return port
    }
    return undefined
  }

  /** The application's connect, once it holds storage: rules, listener, handshake. */
  dial(target: Endpoint, deadline: Deadline.Deadline): Effect.Effect<Link, TcpError.ConnectError> {
    const text = target.key
    return Effect.flatMap(Deadline.now, (now) => {
      // A handshake always waits for the peer: deadline 0 never gets that far.
      if (deadline === 0 || (deadline !== -1 && deadline <= now)) {
        return Effect.fail(TcpError.timedOut("connect", text))
      }
      const injected = this.connectRules.take(text)
      if (injected !== undefined) return Effect.fail(injected)
      const listener = this.listeners.get(text)
      if (listener === undefined) {
        return Effect.fail(TcpError.make(TcpError.ConnRefused, "ECONNREFUSED", "connect", text, undefined))
      }
      const link = new Link(this, listener, target)
      listener.arrive(link)
      const connecting = this.until(
        deadline,
        () => TcpError.timedOut("connect", text),
        (): Effect.Effect<Link, TcpError.ConnRefused> | undefined =>
          link.handshake === "established"
            ? Effect.succeed(link)
            : link.handshake === "refused"
            ? Effect.fail(TcpError.make(TcpError.ConnRefused, "ECONNREFUSED", "connect", text, "listener closed"))
            : undefined
      )
      return Effect.onExit(connecting, (exit) =>
        Effect.sync(() => {
          if (Exit.isFailure(exit)) listener.withdraw(link)
        }))
    })
  }
}

/**
 * One in-memory connection: the application's end (`client`, a core
 * connection) and the server's (`server`: the scripted `Peer`, or an
 * in-memory server's core connection).
 */
class Link {
  readonly world: World
  /** The server as the application names it, for the application's errors. */
  readonly address: string
  /** The application's end as the server names it, for the server's errors. */
  readonly appAddress: string | undefined
  readonly appInet: NetAddress.InetAddress | undefined
  readonly serverInet: NetAddress.InetAddress | undefined
  readonly peer: PeerImpl
  /** Application → server. */
  readonly up = new Pipe()
  /** Server → application. */
  readonly down = new Pipe()
  readonly client: Side
  readonly server: Side
  handshake: "pending" | "established" | "refused" = "pending"
  readonly injected: Injected = noInjections()
  readonly peerGate = new Gate()

  constructor(world: World, listener: ListenerImpl, target: Endpoint) {
    this.world = world
    this.address = target.key
    this.serverInet = target.inet
    const ipv6 = target.inet !== undefined && NetAddress.isFamily(target.inet, "IPv6")
    this.appInet = loopback(ipv6, world.ephemeral() ?? 49152)
    this.appAddress = this.appInet === undefined ? undefined : NetAddress.formatInet(this.appInet)
    const changed = () => world.changed()
    this.client = new Side(changed, this.up, this.down, listener.window, this.appInet, this.serverInet)
    // What the server sends never waits: the scripted peer's sends are documented so.
    this.server = new Side(changed, this.down, this.up, listener.serverWindow, this.serverInet, this.appInet)
    this.client.other = this.server
    this.server.other = this.client
    this.peer = new PeerImpl(this)
  }

  /** Errors the test queued for the application's next calls. */
  readonly injector: Injector = {
    recv: () => this.injected.recv.shift(),
    recvUntil: () => this.injected.recvUntil.shift(),
    send: () => this.injected.send.shift(),
    done: () => this.injected.done.shift(),
    close: () => this.injected.close.shift()
  }

  /** A connect that failed after the handshake: the server sees the application go. */
  abandon(): void {
    if (this.client.released) return
    this.client.released = true
    this.up.fin = true
    this.server.wake()
  }

  appState(): AppState {
    const conn = this.client.conn
    if (conn === undefined) return this.client.released ? "aborted" : "open"
    return conn.state
  }

  /** The scripted peer changed the pipes: the application's end checks again. */
  wake(): void {
    this.client.wake()
  }
}

/** The peer's end of a `Link`. */
class PeerImpl extends Inspectable.Class implements Peer {
  readonly link: Link
  constructor(link: Link) {
    super()
    this.link = link
  }

  get localAddress() {
    return this.link.serverInet
  }

  get remoteAddress() {
    return this.link.appInet
  }

  send(data: Uint8Array | string) {
    return peerSend(this.link, data)
  }

  recv(n: number, options?: Deadline.Options) {
    return peerRecv(this.link, n, options)
  }

  recvAll(options?: Deadline.Options) {
    return peerRecvAll(this.link, options)
  }

  get end(): Effect.Effect<void> {
    return Effect.sync(() => {
      const link = this.link
      if (link.client.reset || link.down.fin) return
      link.down.fin = true
      link.wake()
    })
  }

  get reset(): Effect.Effect<void> {
    return Effect.sync(() => {
      const link = this.link
      link.server.sendReset()
    })
  }

  failNext<Op extends Operation>(op: Op, error: Injectable[Op]): Effect.Effect<void> {
    return Effect.sync(() => {
      const queue: Array<Injectable[Op]> = this.link.injected[op]
      queue.push(error)
    })
  }

  get status(): Effect.Effect<Status> {
    return Effect.sync(() => ({
      app: this.link.appState(),
      unread: this.link.up.size,
      undelivered: this.link.client.unconsumed
    }))
  }

  /** Addresses, state and sizes: never the bytes in flight. */
  toJSON() {
    return {
      _id: "TcpTest.Peer",
      localAddress: this.link.address,
      remoteAddress: this.link.appAddress,
      app: this.link.appState(),
      unread: this.link.up.size,
      undelivered: this.link.client.unconsumed
    }
  }
}

const peerSend = Effect.fn("TcpTest.Peer.send")(
  function*(link: Link, data: Uint8Array | string): Effect.fn.Return<void, TcpError.SendError> {
    const address = link.appAddress
    const bytes = typeof data === "string" ? utf8.encode(data) : isBytes(data) ? data.slice() : undefined
    if (bytes === undefined) return yield* TcpError.invalid("send", "expected a Uint8Array or a string", address)
    if (link.client.reset) return yield* TcpError.closed("send", address)
    if (link.down.fin) return yield* brokenPipe("send", address, "sending side already finished")
    if (link.client.released) {
      return yield* link.server.reset
        ? reset("send", address)
        : brokenPipe("send", address, "the application closed the connection")
    }
    // A closing application reads and discards until our FIN.
    if (link.appState() === "closing") return
    link.down.push(bytes)
    link.wake()
  }
)

/** Why the peer cannot receive any more, if it cannot. */
const peerBlocked = (link: Link): TcpError.Closed | TcpError.ConnReset | undefined =>
  link.client.reset
    ? TcpError.closed("recv", link.appAddress)
    : link.server.reset
    ? reset("recv", link.appAddress)
    : undefined

/**
 * Receives for the peer: bytes are taken as they come (so an application
 * send bounded by the window can progress) and put back if the receive
 * times out or is interrupted.
 */
const peerReceive = <A>(
  link: Link,
  fill: Fill,
  deadline: Deadline.Deadline,
  complete: () => boolean,
  result: () => A
): Effect.Effect<A, TcpError.RecvError> => {
  let settled = false
  const onTimeout = () => TcpError.timedOut("recv", link.appAddress)
  const reading = link.world.until(deadline, onTimeout, (): Effect.Effect<A, TcpError.RecvError> | undefined => {
    const blocked = peerBlocked(link)
    if (blocked !== undefined) {
      settled = true
      return Effect.fail(blocked)
    }
    const n = Math.min(link.up.size, fill.wanted)
    if (n > 0) {
      fill.put(link.up.take(n))
      link.wake()
    }
    if (complete()) {
      settled = true
      return Effect.succeed(result())
    }
    if (link.up.fin) {
      settled = true
      return Effect.fail(TcpError.peerClosed("recv", fill.collect(), link.appAddress))
    }
    return undefined
  })
  const guarded = Effect.onExit(reading, (exit) =>
    Effect.sync(() => {
      if (Exit.isFailure(exit) && !settled && fill.filled > 0) {
        link.up.unshift(fill.collect())
        link.world.changed()
      }
    }))
  return link.peerGate.run(guarded, deadline, onTimeout)
}

const peerRecv = Effect.fn("TcpTest.Peer.recv")(
  function*(link: Link, n: number, options?: Deadline.Options): Effect.fn.Return<Uint8Array, TcpError.RecvError> {
    if (!Number.isSafeInteger(n) || n < 0 || n > kMaxLength) {
      return yield* TcpError.invalid("recv", `length must be an integer in 0..${kMaxLength}`, link.appAddress)
    }
    const deadline = yield* Deadline.resolve(options, "recv", link.appAddress)
    const bytes = new Uint8Array(n)
    const fill = new Fill([bytes], n)
    return yield* peerReceive(link, fill, deadline, () => fill.wanted === 0, () => bytes)
  }
)

const peerRecvAll = Effect.fn("TcpTest.Peer.recvAll")(
  function*(link: Link, options?: Deadline.Options): Effect.fn.Return<Uint8Array, TcpError.RecvError> {
    const deadline = yield* Deadline.resolve(options, "recv", link.appAddress)
    return yield* peerReceiveAll(link, deadline)
  }
)

/** `recvAll`: everything until the application's FIN, put back if it gives up. */
const peerReceiveAll = (link: Link, deadline: Deadline.Deadline): Effect.Effect<Uint8Array, TcpError.RecvError> => {
  const taken: Array<Uint8Array> = []
  let settled = false
  const onTimeout = () => TcpError.timedOut("recv", link.appAddress)
  const reading = link.world.until(deadline, onTimeout, (): Effect.Effect<Uint8Array, TcpError.RecvError> | undefined => {
    const blocked = peerBlocked(link)
    if (blocked !== undefined) {
      settled = true
      return Effect.fail(blocked)
    }
    if (link.up.size > 0) {
      taken.push(link.up.take(link.up.size))
      link.wake()
    }
    if (link.up.fin) {
      settled = true
      return Effect.succeed(concat(taken))
    }
    return undefined
  })
  const guarded = Effect.onExit(reading, (exit) =>
    Effect.sync(() => {
      if (Exit.isFailure(exit) && !settled && taken.length > 0) {
        link.up.unshift(concat(taken))
        link.world.changed()
      }
    }))
  return link.peerGate.run(guarded, deadline, onTimeout)
}

/** An in-memory listener: connects queue here until the test accepts them. */
class ListenerImpl extends Inspectable.Class implements Listener {
  readonly world: World
  readonly key: string
  readonly address: string
  readonly port: number
  readonly endpoint: Endpoint
  readonly backlog: number
  /** What the application's end of each connection may have sent that the server has not taken. */
  readonly window: number
  /** The same the other way: unbounded for a scripted peer, whose sends never wait. */
  readonly serverWindow: number
  readonly incoming: Array<Link> = []
  readonly injected: Injected = noInjections()
  closed = false

  constructor(world: World, endpoint: Endpoint, backlog: number, window: number, serverWindow: number) {
    super()
    this.world = world
    this.endpoint = endpoint
    this.key = endpoint.key
    this.address = endpoint.key
    this.port = endpoint.port
    this.backlog = backlog
    this.window = window
    this.serverWindow = serverWindow
  }

  /** The next connection, oldest first, its handshake completed; `undefined` while none waits. */
  take(): Effect.Effect<Link, TcpError.Closed> | undefined {
    if (this.closed) return Effect.fail(TcpError.closed("accept", this.address))
    const link = this.incoming.shift()
    if (link === undefined) return undefined
    if (link.handshake === "pending") this.establish(link)
    this.admit()
    return Effect.succeed(link)
  }

  accept(options?: Deadline.Options) {
    return accept(this, options)
  }

  failNext<Op extends Operation>(op: Op, error: Injectable[Op]): Effect.Effect<void> {
    return Effect.sync(() => {
      const queue: Array<Injectable[Op]> = this.injected[op]
      queue.push(error)
    })
  }

  get pending(): Effect.Effect<number> {
    return Effect.sync(() => this.incoming.length)
  }

  readonly close: Effect.Effect<void> = Effect.sync(() => {
    if (this.closed) return
    this.closed = true
    if (this.world.listeners.get(this.key) === this) this.world.listeners.delete(this.key)
    for (const link of this.incoming.splice(0)) {
      // Waiting connects are refused; established ones the kernel would reset.
      if (link.handshake === "pending") link.handshake = "refused"
      else {
        link.server.sendReset()
      }
    }
    this.world.changed()
  })

  /** A connect arrives. */
  arrive(link: Link): void {
    this.incoming.push(link)
    this.admit()
    this.world.changed()
  }

  /** Completes handshakes in arrival order while fewer than `backlog` wait established. */
  admit(): void {
    let established = this.incoming.filter((link) => link.handshake === "established").length
    for (const link of this.incoming) {
      if (established >= this.backlog) break
      if (link.handshake !== "pending") continue
      this.establish(link)
      established += 1
    }
  }

  establish(link: Link): void {
    link.handshake = "established"
    moveInjections(this.injected, link.injected)
    this.world.changed()
  }

  /** A connect gave up: forget it; if it was established the peer sees it go. */
  withdraw(link: Link): void {
    const index = this.incoming.indexOf(link)
    if (index !== -1) this.incoming.splice(index, 1)
    if (link.handshake === "established") link.abandon()
    this.admit()
  }

  /** Address, state and queue size: never a waiting connection's bytes. */
  toJSON() {
    return {
      _id: "TcpTest.Listener",
      address: this.address,
      state: this.closed ? "closed" : "listening",
      queued: this.incoming.length,
      backlog: this.backlog
    }
  }
}

const accept = Effect.fn("TcpTest.Listener.accept")(
  function*(
    listener: ListenerImpl,
    options?: Deadline.Options
  ): Effect.fn.Return<Peer, TcpError.TimedOut | TcpError.Closed | TcpError.InvalidArgument> {
    const deadline = yield* Deadline.resolve(options, "accept", listener.address)
    const link = yield* listener.world.until(
      deadline,
      () => TcpError.timedOut("accept", listener.address),
      () => listener.take()
    )
    return link.peer
  }
)

const listenIn = (
  world: World,
  address: unknown,
  options: ListenOptions | undefined,
  serverWindow = Number.POSITIVE_INFINITY
): Effect.Effect<ListenerImpl, TcpError.InvalidArgument | TcpError.AddrInUse> =>
  Effect.suspend((): Effect.Effect<ListenerImpl, TcpError.InvalidArgument | TcpError.AddrInUse> => {
    const parsed = parseEndpoint(address, "listen", true)
    if (Result.isFailure(parsed)) return Effect.fail(parsed.failure)
    let endpoint = parsed.success
    const backlog: unknown = options?.backlog === undefined ? 0 : options.backlog
    const window: unknown = options?.window === undefined ? Number.POSITIVE_INFINITY : options.window
    if (!isCount(backlog, 0) || !isLimit(window) || !isLimit(serverWindow)) {
      return Effect.fail(TcpError.invalid("listen", "backlog must be >= 0 and window >= 1", endpoint.key))
    }
    if (endpoint.port === 0) {
      const port = world.ephemeral((p) => !world.listeners.has(withPort(endpoint, p).key))
      if (port === undefined) {
        return Effect.fail(TcpError.make(TcpError.AddrInUse, "EADDRINUSE", "listen", endpoint.key, "no free port"))
      }
      endpoint = withPort(endpoint, port)
    }
    if (world.listeners.has(endpoint.key)) {
      return Effect.fail(TcpError.make(TcpError.AddrInUse, "EADDRINUSE", "listen", endpoint.key, undefined))
    }
    const listener = new ListenerImpl(world, endpoint, backlog, window, serverWindow)
    world.listeners.set(endpoint.key, listener)
    return Effect.succeed(listener)
  })

/** Queues `error` for the next `times` calls to `address` (a connect's, or a server's accepts). */
const failIn = <E>(
  rules: Rules<E>,
  address: unknown,
  error: E,
  options: FailOptions | undefined,
  syscall: "connect" | "accept" | "tls"
): Effect.Effect<void, TcpError.InvalidArgument> =>
  Effect.suspend(() => {
    const parsed = parseEndpoint(address, syscall, syscall !== "connect")
    if (Result.isFailure(parsed)) return Effect.fail(parsed.failure)
    const key = parsed.success.key
    const times: unknown = options?.times === undefined ? Number.POSITIVE_INFINITY : options.times
    if (!isLimit(times)) return Effect.fail(TcpError.invalid(syscall, "times must be a positive integer", key))
    rules.add(key, error, times)
    return Effect.void
  })

// ------------------------------------------------- the application's servers

/**
 * What the kernel would buffer each way of a connection between two of the
 * application's own sockets: sends past it wait for the other end to read.
 */
const SERVER_WINDOW = 256 * 1024

/** A server the application opened with `TcpListener.listen` under `TcpTest.layer`. */
class MemoryListener extends Inspectable.Class implements TcpListener.TcpListener {
  readonly [TcpListener.TypeId] = TcpListener.TypeId
  readonly listener: ListenerImpl
  readonly address: NetAddress.InetAddress
  constructor(listener: ListenerImpl) {
    super()
    this.listener = listener
    this.address = listener.endpoint.inet ?? localhost(listener.port)
  }
  get port(): number {
    return this.listener.port
  }
  accept(options?: TcpListener.AcceptOptions) {
    return acceptApp(this.listener, options)
  }
  get close(): Effect.Effect<void> {
    return this.listener.close
  }
  pipe() {
    return pipeArguments(this, arguments)
  }
  toJSON() {
    const { _id, ...rest } = this.listener.toJSON()
    return { ...rest, _id: "TcpListener", inMemory: true }
  }
}

/** Where a listener on a name (`localhost:0`) is bound, as an address. */
const localhost = (port: number): NetAddress.InetAddress =>
  loopback(false, port) ?? NetAddress.inetAddressUnsafe(NetAddress.ipv4Loopback, port)

/**
 * Accepts for the application's server: the next connection first, then a
 * slot for it, both within the deadline, as on Node. When no slot can be
 * had the connection goes back to the head of the queue.
 */
const acceptApp = Effect.fn("TcpListener.accept")(
  function*(
    listener: ListenerImpl,
    options?: TcpListener.AcceptOptions
  ): Effect.fn.Return<TcpSocket.TcpSocket, TcpError.AcceptError, Scope.Scope> {
    const world = listener.world
    const text = listener.address
    const closeTimeout = yield* Effect.fromResult(checkSettings(options, "accept", text))
    const deadline = yield* Deadline.resolve(options, "accept", text)
    const injected = world.acceptRules.take(listener.key)
    if (injected !== undefined) return yield* injected
    const pool = world.pool
    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        restore(world.until(deadline, () => TcpError.timedOut("accept", text), () => listener.take())),
        (link) =>
          restore(claim(pool, options?.storage, deadline, "accept", text)).pipe(
            Effect.onError(() =>
              Effect.sync(() => {
                if (listener.closed) return link.server.sendReset()
                listener.incoming.unshift(link)
                world.changed()
              })
            ),
            Effect.flatMap((slot) => {
              const conn = new Connection(slot, link.appAddress, () => {
                unclaim(slot)
                world.changed()
              }, (events) => link.server.bind(events))
              link.server.conn = conn
              link.server.handshakeFailure = () => world.tlsRules.take(listener.key)
              link.server.wake()
              return attach(conn, closeTimeout, pool)
            })
          )
      )
    )
  }
)

/** `TcpListener.listen` and `fromFd` on the in-memory network. */
const networkOf = (world: World): TcpListener.Network => ({
  listen: (address, options) =>
    Effect.acquireRelease(
      Effect.flatMap(
        Effect.suspend(() => {
          const settings = listenSettings(options, describeAddress(address))
          return Result.isFailure(settings)
            ? Effect.fail(settings.failure)
            : listenIn(world, address, { backlog: settings.success.backlog, window: SERVER_WINDOW }, SERVER_WINDOW)
        }),
        (listener) => Effect.succeed(new MemoryListener(listener))
      ),
      (listener) => listener.close
    ),
  fromFd: (fd) =>
    Effect.fail(TcpError.invalid("listen", "fd is not a TCP socket (TcpTest has no descriptors)", `fd ${String(fd)}`))
})

// ------------------------------------------------------------------ client

const makeClient = (world: World): TcpClient.TcpClient["Service"] => {
  const connect = Effect.fn("TcpTest.connect")(
    function*(
      address: TcpClient.TcpAddress,
      options?: TcpClient.ConnectOptions
    ): Effect.fn.Return<TcpSocket.TcpSocket, TcpError.ConnectError | TcpError.TlsError, Scope.Scope> {
      const target = yield* Effect.fromResult(parseEndpoint(address, "connect", false))
      const text = target.key
      const closeTimeout = yield* Effect.fromResult(checkSettings(options, "connect", text))
      const tls = options?.tls === undefined
        ? undefined
        : yield* Effect.fromResult(prepareOnce(options.tls, "client", "connect", text, false))
      const family: unknown = options?.family === undefined ? "any" : options.family
      if (family !== "ipv4" && family !== "ipv6" && family !== "any") {
        return yield* TcpError.invalid("connect", `family must be "ipv4", "ipv6" or "any"`, text)
      }
      const deadline = yield* Deadline.resolve(options, "connect", text)
      if (target.inet !== undefined && family !== "any") {
        const wanted = family === "ipv4" ? "IPv4" : "IPv6"
        if (!NetAddress.isFamily(target.inet, wanted)) {
          return yield* TcpError.make(
            TcpError.AddrNotAvail,
            "EADDRNOTAVAIL",
            "connect",
            text,
            `cannot resolve: not an ${wanted} address`
          )
        }
      }
      const pool = world.pool
      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(claim(pool, options?.storage, deadline, "connect", text)), (slot) =>
          restore(world.dial(target, deadline)).pipe(
            Effect.onError(() => Effect.sync(() => unclaim(slot))),
            Effect.flatMap((link) => {
              // The application's end runs the same rules as on Node, over the link.
              const conn = new Connection(slot, link.address, () => {
                unclaim(slot)
                world.live -= 1
                world.changed()
              }, (events) => link.client.bind(events))
              conn.inject = link.injector
              link.client.conn = conn
              link.client.handshakeFailure = () => world.tlsRules.take(text)
              world.live += 1
              // What the peer did before the connection existed (bytes, FIN, RST) reaches it now.
              link.wake()
              if (tls === undefined) return attach(conn, closeTimeout, pool)
              return upgradeConnection(conn, "client", tls, undefined, deadline, "connect").pipe(
                Effect.mapError(reportedAs(TcpError.connectTags)),
                Effect.flatMap((secure) => attach(secure, closeTimeout, pool))
              )
            })
          ))
      )
    }
  )

  const fromFd = Effect.fn("TcpTest.fromFd")(
    function*(
      fd: number,
      options?: TcpClient.FromFdOptions
    ): Effect.fn.Return<TcpSocket.TcpSocket, TcpError.ConnectError, Scope.Scope> {
      const text = `fd ${String(fd)}`
      if (!Number.isSafeInteger(fd) || fd < 0) {
        return yield* TcpError.invalid("fromFd", "fd must be a descriptor number", text)
      }
      yield* Effect.fromResult(checkSettings(options, "fromFd", text))
      yield* Deadline.resolve(options, "fromFd", text)
      return yield* TcpError.invalid("fromFd", "fd is not a TCP socket (TcpTest has no descriptors)", text)
    }
  )

  return TcpClient.TcpClient.of({ connect: connect as TcpClient.Connect, fromFd })
}

// ----------------------------------------------------------------- service

const build: Effect.Effect<
  Context.Context<TcpTest | TcpClient.TcpClient>,
  never,
  TcpStorage.TcpStorage | Scope.Scope
> = Effect.gen(function*() {
  const storage = yield* TcpStorage.TcpStorage
  const world = new World(yield* poolOf(storage))
  const control = TcpTest.of({
    listen: (address, options) =>
      Effect.acquireRelease(listenIn(world, address, options), (listener) => listener.close),
    failConnect: (address, error, options) => failIn(world.connectRules, address, error, options, "connect"),
    failAccept: (address, error, options) => failIn(world.acceptRules, address, error, options, "accept"),
    failTls: (address, error, options) => failIn(world.tlsRules, address, error, options, "tls"),
    openSockets: Effect.sync(() => world.live)
  })
  return Context.make(TcpTest, control).pipe(
    Context.add(TcpClient.TcpClient, makeClient(world)),
    Context.add(TcpListener.Listening, networkOf(world))
  )
})

/**
 * `TcpTest.layerWith`: without options it cannot fail; with options, ones
 * out of range fail the layer with `InvalidArgument`.
 *
 * @example
 * ```ts
 * import type { Layer } from "effect"
 * import { TcpClient, TcpError, TcpStorage, TcpTest } from "effect-tcp"
 * const Tcp: Layer.Layer<TcpTest.TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage, TcpError.InvalidArgument> =
 *   TcpTest.layerWith({ slots: 1 })
 * ```
 * @since 0.1.0
 */
export interface LayerWithConstructor {
  (): Layer.Layer<TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage>
  (
    options: TcpStorage.Options | undefined
  ): Layer.Layer<TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage, TcpError.InvalidArgument>
}

function testLayer(): Layer.Layer<TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage>
function testLayer(
  options: TcpStorage.Options | undefined
): Layer.Layer<TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage, TcpError.InvalidArgument>
function testLayer(
  options?: TcpStorage.Options
): Layer.Layer<TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage, TcpError.InvalidArgument> {
  return Layer.effectContext(build).pipe(Layer.provideMerge(TcpStorage.layer(options)))
}

/**
 * The control service of the in-memory network: listeners the test plays,
 * connect failures, and the count of the application's open sockets.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpError, TcpTest } from "effect-tcp"
 * Effect.gen(function*() {
 *   const test = yield* TcpTest.TcpTest
 *   const server = yield* test.listen("127.0.0.1:6379")
 *   yield* test.failConnect("10.0.0.1:6379", TcpError.timedOut("connect", "10.0.0.1:6379"), { times: 1 })
 *   const open = yield* test.openSockets
 * })
 * ```
 * @since 0.1.0
 */
export class TcpTest extends Context.Service<TcpTest, {
  /** An in-memory listener at `address` (port 0 picks one) for the current scope. */
  readonly listen: (
    address: TcpClient.TcpAddress,
    options?: ListenOptions
  ) => Effect.Effect<Listener, TcpError.InvalidArgument | TcpError.AddrInUse, Scope.Scope>
  /** Connects to `address` fail with `error` (`times` of them, default every one). */
  readonly failConnect: (
    address: TcpClient.TcpAddress,
    error: TcpError.ConnectError,
    options?: FailOptions
  ) => Effect.Effect<void, TcpError.InvalidArgument>
  /**
   * The accepts of the application's own server at `address` (one opened
   * with `TcpListener.listen` under this layer) fail with `error` (`times`
   * of them, default every one); the connections wait for later accepts.
   */
  readonly failAccept: (
    address: TcpClient.TcpAddress,
    error: TcpError.AcceptError,
    options?: FailOptions
  ) => Effect.Effect<void, TcpError.InvalidArgument>
  /**
   * TLS handshakes with the server at `address` fail with `error` (`times`
   * of them, default every one): a client's connect with `tls` or its
   * `TcpTls.client` to it, and the accepts or `TcpTls.server` of an
   * in-memory TLS server listening there.
   */
  readonly failTls: (
    address: TcpClient.TcpAddress,
    error: TcpError.TlsError,
    options?: FailOptions
  ) => Effect.Effect<void, TcpError.InvalidArgument>
  /** The application's sockets not yet closed or aborted. */
  readonly openSockets: Effect.Effect<number>
}>()("effect-tcp/TcpTest") {
  /**
   * The in-memory client, the control service and a `TcpStorage` pool with
   * the given settings (its slots count the in-memory sockets, so a small
   * pool with `onExhausted: "fail"` makes connects fail with `OutOfMemory`).
   * Settings out of range fail the layer with `InvalidArgument`, as
   * `TcpStorage.layer` does.
   *
   * @example
   * ```ts
   * import { TcpTest } from "effect-tcp"
   * const Tcp = TcpTest.TcpTest.layerWith({ slots: 1, onExhausted: "fail" })
   * ```
   * @since 0.1.0
   */
  static readonly layerWith: LayerWithConstructor = testLayer

  /**
   * The in-memory client, the control service and a default `TcpStorage`
   * pool: provide it where the application provides `TcpNode.layer`.
   *
   * @example
   * ```ts
   * import { Effect } from "effect"
   * import { TcpClient, TcpTest } from "effect-tcp"
   * TcpClient.connect("127.0.0.1:6379").pipe(Effect.scoped, Effect.provide(TcpTest.TcpTest.layer))
   * ```
   * @since 0.1.0
   */
  static readonly layer: Layer.Layer<TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage> = testLayer()
}

/**
 * `TcpClient` in memory, the `TcpTest` control service and a default
 * `TcpStorage` pool: what `TcpNode.layer` is to an application, for its
 * tests. Each use builds a new, empty network.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpTest } from "effect-tcp"
 * const program = TcpClient.connect("127.0.0.1:6379", { timeout: "1 second" }).pipe(Effect.scoped)
 * program.pipe(Effect.provide(TcpTest.layer)) // fails with ConnRefused: nobody listens
 * ```
 * @since 0.1.0
 */
export const layer: Layer.Layer<TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage> = TcpTest.layer

/**
 * Like `layer`, with the storage pool's settings given.
 *
 * @example
 * ```ts
 * import { TcpTest } from "effect-tcp"
 * const Tcp = TcpTest.layerWith({ slots: 1, onExhausted: "fail" }) // a second socket: OutOfMemory
 * ```
 * @since 0.1.0
 */
export const layerWith: LayerWithConstructor = TcpTest.layerWith

/**
 * Opens an in-memory listener at `address` for the current scope: connects
 * the application makes to that address (`TcpClient.connect` with
 * `TcpTest.layer`) wait until the test accepts them; `accept` yields their
 * peer side. Port `0` picks a free port; an address already listened on is
 * `AddrInUse`. Addresses match as written after parsing: `localhost:80` and
 * `127.0.0.1:80` are different addresses, and names are never resolved.
 *
 * @example
 * ```ts
 * import { Effect, Fiber } from "effect"
 * import { TcpClient, TcpTest } from "effect-tcp"
 * const test = Effect.gen(function*() {
 *   const server = yield* TcpTest.listen("127.0.0.1:6379")
 *   const app = yield* Effect.forkChild(
 *     Effect.scoped(Effect.flatMap(TcpClient.connect("127.0.0.1:6379"), (socket) => socket.recv(4)))
 *   )
 *   const peer = yield* server.accept()
 *   yield* peer.send("PONG")
 *   return yield* Fiber.join(app) // the 4 bytes "PONG"
 * }).pipe(Effect.scoped, Effect.provide(TcpTest.layer))
 * ```
 * @since 0.1.0
 */
export const listen = Effect.fn("TcpTest.listen")(
  function*(
    address: TcpClient.TcpAddress,
    options?: ListenOptions
  ): Effect.fn.Return<Listener, TcpError.InvalidArgument | TcpError.AddrInUse, TcpTest | Scope.Scope> {
    const test = yield* TcpTest
    return yield* test.listen(address, options)
  }
)

/**
 * Makes the application's connects to `address` fail with `error`: the next
 * `times` of them (default: every one). Rules for one address apply in the
 * order given. A connect with deadline `0` fails with `TimedOut` before it
 * reaches a rule, as a real handshake always waits.
 *
 * @example
 * ```ts
 * import { TcpError, TcpTest } from "effect-tcp"
 * TcpTest.failConnect(
 *   "192.0.2.1:443",
 *   TcpError.make(TcpError.HostUnreach, "EHOSTUNREACH", "connect", "192.0.2.1:443", undefined),
 *   { times: 2 }
 * )
 * ```
 * @since 0.1.0
 */
export const failConnect = Effect.fn("TcpTest.failConnect")(
  function*(
    address: TcpClient.TcpAddress,
    error: TcpError.ConnectError,
    options?: FailOptions
  ): Effect.fn.Return<void, TcpError.InvalidArgument, TcpTest> {
    const test = yield* TcpTest
    return yield* test.failConnect(address, error, options)
  }
)

/**
 * Makes the accepts of the application's own in-memory server at `address`
 * fail with `error`: the next `times` of them (default: every one). The
 * server side's counterpart of `failConnect`: a `TcpListener.serve` under
 * `TcpTest.layer` then meets `TooManyOpenFiles` or `OutOfMemory` as it
 * would under load, and connections wait for the accept that succeeds.
 *
 * @example
 * ```ts
 * import { TcpError, TcpTest } from "effect-tcp"
 * const emfile = TcpError.make(TcpError.TooManyOpenFiles, "EMFILE", "accept", "127.0.0.1:8080", undefined)
 * TcpTest.failAccept("127.0.0.1:8080", emfile, { times: 3 })
 * ```
 * @since 0.1.0
 */
export const failAccept = Effect.fn("TcpTest.failAccept")(
  function*(
    address: TcpClient.TcpAddress,
    error: TcpError.AcceptError,
    options?: FailOptions
  ): Effect.fn.Return<void, TcpError.InvalidArgument, TcpTest> {
    const test = yield* TcpTest
    return yield* test.failAccept(address, error, options)
  }
)

/**
 * Makes TLS handshakes with the server at `address` fail with `error`: the
 * next `times` of them (default: every one), whichever end runs them.
 * Under `TcpTest.layer` TLS has no crypto, so this is how a test meets
 * `TlsHandshakeFailed` and `CertificateRejected`.
 *
 * @example
 * ```ts
 * import { TcpError, TcpTest } from "effect-tcp"
 * const expired = TcpError.make({ tag: "CertificateRejected", syscall: "connect", reason: "CERT_HAS_EXPIRED" })
 * TcpTest.failTls("10.0.0.5:6380", expired, { times: 1 })
 * ```
 * @since 0.1.0
 */
export const failTls = Effect.fn("TcpTest.failTls")(
  function*(
    address: TcpClient.TcpAddress,
    error: TcpError.TlsError,
    options?: FailOptions
  ): Effect.fn.Return<void, TcpError.InvalidArgument, TcpTest> {
    const test = yield* TcpTest
    return yield* test.failTls(address, error, options)
  }
)

/**
 * How many sockets the application holds that are not yet closed or aborted
 * (a socket whose scope ended is counted until its background close ends).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpTest } from "effect-tcp"
 * const noLeak = Effect.map(TcpTest.openSockets, (n) => n === 0)
 * ```
 * @since 0.1.0
 */
export const openSockets: Effect.Effect<number, never, TcpTest> = TcpTest.use((test) => test.openSockets)
