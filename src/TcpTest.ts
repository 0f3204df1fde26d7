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
import { Context, Duration, Effect, Exit, Inspectable, Layer, Predicate, Result, Scope } from "effect"
import type { Sink, Stream } from "effect"
import { Host, NetAddress } from "effect/net"
import { pipeArguments } from "effect/Pipeable"
import { kMaxLength } from "node:buffer"
import * as Deadline from "./Deadline.ts"
import { parse } from "./internal/address.ts"
import { gather } from "./internal/bytes.ts"
import { resolveSettings } from "./internal/options.ts"
import { attempt, Gate, suspend } from "./internal/wait.ts"
import * as TcpClient from "./TcpClient.ts"
import * as TcpError from "./TcpError.ts"
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

const noInjections = (): Injected => ({ send: [], recv: [], done: [], close: [] })

const moveInjections = (from: Injected, to: Injected): void => {
  to.send.push(...from.send.splice(0))
  to.recv.push(...from.recv.splice(0))
  to.done.push(...from.done.splice(0))
  to.close.push(...from.close.splice(0))
}

const isBytes = (u: unknown): u is Uint8Array => u instanceof Uint8Array

const bytesList = (u: unknown): ReadonlyArray<Uint8Array> | undefined =>
  Array.isArray(u) && u.every(isBytes) ? u : undefined

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

/** One direction of a connection: bytes in order, then perhaps the FIN. */
class Pipe {
  private chunks: Array<Uint8Array> = []
  size = 0
  fin = false

  /** Appends bytes the pipe may keep (the caller's copy). */
  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    this.chunks.push(bytes)
    this.size += bytes.length
  }

  /** Puts bytes back at the head (a receive that gave up). */
  unshift(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    this.chunks.unshift(bytes)
    this.size += bytes.length
  }

  /** Removes and returns up to `count` bytes from the head. */
  take(count: number): Uint8Array {
    const out = new Uint8Array(Math.min(count, this.size))
    let at = 0
    while (at < out.length) {
      const head = this.chunks[0]
      if (head === undefined) break
      const n = Math.min(head.length, out.length - at)
      out.set(head.subarray(0, n), at)
      at += n
      if (n === head.length) this.chunks.shift()
      else this.chunks[0] = head.subarray(n)
    }
    this.size -= at
    return out
  }

  clear(): void {
    this.chunks = []
    this.size = 0
  }
}

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

const isCount = (n: unknown, min: number): n is number => typeof n === "number" && Number.isSafeInteger(n) && n >= min

/** A positive integer, or unbounded. */
const isLimit = (n: unknown): n is number => n === Number.POSITIVE_INFINITY || isCount(n, 1)

const isSlot = (u: unknown): u is TcpStorage.Slot =>
  Predicate.hasProperty(u, "id") && Predicate.hasProperty(u, "bufferSize") && typeof u.id === "number"

const loopback = (ipv6: boolean, port: number): NetAddress.InetAddress | undefined => {
  const address = NetAddress.inetAddressFromIpString(ipv6 ? "::1" : "127.0.0.1", port)
  return Result.isSuccess(address) ? address.success : undefined
}

interface Rule {
  readonly error: TcpError.ConnectError
  remaining: number
}

/**
 * The in-memory network of one layer: listeners by address, connect rules,
 * and one change signal every blocked call waits on. Any state change wakes
 * every waiter, which then checks its own condition again: simple, and tests
 * have few waiters.
 */
/** A caller-supplied slot serving an in-memory socket. */
interface OwnSlot {
  /** Its socket finishes a graceful close in the background: a connect given the slot waits for it. */
  closing: boolean
  readonly waiters: Array<() => void>
  release: Effect.Effect<void>
}

/** The storage a socket lives in, and how to give it back. */
interface Claim {
  readonly release: Effect.Effect<void>
  readonly own: OwnSlot | undefined
}

class World {
  readonly storage: TcpStorage.TcpStorage["Service"]
  /** Where graceful closes that outlive their socket's scope run. */
  readonly background: Scope.Scope
  readonly listeners = new Map<string, ListenerImpl>()
  readonly rules = new Map<string, Array<Rule>>()
  /** Caller-supplied slots serving a socket, with who waits for each to be released. */
  readonly slotsInUse = new WeakMap<TcpStorage.Slot, OwnSlot>()
  live = 0
  private version = 0
  private readonly waiters = new Set<() => void>()
  private nextPort = 49152

  constructor(storage: TcpStorage.TcpStorage["Service"], background: Scope.Scope) {
    this.storage = storage
    this.background = background
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
    return suspend<void, never, E2>(deadline, onTimeout, (resume) => {
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

  /**
   * Takes the storage a socket lives in: the caller's slot, or one from the
   * pool for the socket's life. Returns the effect that gives it back.
   */
  claim(
    storage: TcpStorage.Slot | undefined,
    deadline: Deadline.Deadline,
    address: string
  ): Effect.Effect<Claim, TcpError.TimedOut | TcpError.OutOfMemory | TcpError.InvalidArgument> {
    if (storage !== undefined) {
      // As on Node: a slot whose socket finishes its close in the background is waited for, within the deadline.
      let claimed: OwnSlot | undefined
      const claiming = attempt<OwnSlot, TcpError.InvalidArgument, TcpError.TimedOut>(
        deadline,
        () => TcpError.timedOut("connect", address),
        (resume) => {
          const tryClaim = (): void => {
            if (!isSlot(storage)) {
              return resume(Effect.fail(TcpError.invalid("connect", "storage is not a TcpStorage slot", address)))
            }
            const held = this.slotsInUse.get(storage)
            if (held?.closing === true) {
              held.waiters.push(tryClaim)
              return
            }
            if (held !== undefined) {
              return resume(Effect.fail(TcpError.invalid("connect", "storage slot already serves an open socket", address)))
            }
            const own: OwnSlot = { closing: false, waiters: [], release: Effect.void }
            own.release = Effect.sync(() => {
              if (this.slotsInUse.get(storage) !== own) return
              this.slotsInUse.delete(storage)
              for (const wake of own.waiters.splice(0)) wake()
            })
            this.slotsInUse.set(storage, own)
            claimed = own
            resume(Effect.succeed(own))
          }
          tryClaim()
          return () => {
            const held = isSlot(storage) ? this.slotsInUse.get(storage) : undefined
            const index = held?.waiters.indexOf(tryClaim) ?? -1
            if (held !== undefined && index !== -1) held.waiters.splice(index, 1)
          }
        }
      )
      return Effect.uninterruptibleMask((restore) =>
        restore(claiming).pipe(
          Effect.onExit((exit) => Exit.isFailure(exit) && claimed !== undefined ? claimed.release : Effect.void),
          Effect.map((own): Claim => ({ release: own.release, own }))
        )
      )
    }
    return Effect.flatMap(Scope.make(), (scope) =>
      this.storage.acquire({ deadline }).pipe(
        Scope.provide(scope),
        Effect.mapError((error) =>
          error._tag === "TimedOut"
            ? TcpError.timedOut("connect", address)
            : error._tag === "OutOfMemory"
            ? TcpError.outOfMemory("connect", "storage pool exhausted", address)
            : error
        ),
        Effect.onError(() => Scope.close(scope, Exit.void)),
        Effect.map((): Claim => ({ release: Scope.close(scope, Exit.void), own: undefined }))
      ))
  }

  /** The application's connect, once it holds storage: rules, listener, handshake. */
  dial(target: Endpoint, deadline: Deadline.Deadline, atomicLimit: number): Effect.Effect<Link, TcpError.ConnectError> {
    const text = target.key
    return Effect.flatMap(Deadline.now, (now) => {
      // A handshake always waits for the peer: deadline 0 never gets that far.
      if (deadline === 0 || (deadline !== -1 && deadline <= now)) {
        return Effect.fail(TcpError.timedOut("connect", text))
      }
      const rules = this.rules.get(text)
      const rule = rules?.[0]
      if (rules !== undefined && rule !== undefined) {
        rule.remaining -= 1
        if (rule.remaining <= 0) rules.shift()
        if (rules.length === 0) this.rules.delete(text)
        return Effect.fail(rule.error)
      }
      const listener = this.listeners.get(text)
      if (listener === undefined) {
        return Effect.fail(TcpError.make(TcpError.ConnRefused, "ECONNREFUSED", "connect", text, undefined))
      }
      const link = new Link(this, listener, target, atomicLimit)
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

/** One connection: the application's end (a `TcpSocket`) and the peer's end. */
class Link {
  readonly world: World
  /** The peer as the application names it, for the application's errors. */
  readonly address: string
  /** The application's end as the peer names it, for the peer's errors. */
  readonly appAddress: string | undefined
  readonly appInet: NetAddress.InetAddress | undefined
  readonly serverInet: NetAddress.InetAddress | undefined
  readonly window: number
  /** Receives up to the storage slot's size complete at once or consume nothing. */
  readonly atomicLimit: number
  readonly peer: PeerImpl

  /** Application → peer. */
  readonly up = new Pipe()
  /** Peer → application. */
  readonly down = new Pipe()
  handshake: "pending" | "established" | "refused" = "pending"
  phase: "open" | "closing" | "released" = "open"
  fate: "closed" | "aborted" | undefined
  outbound: "open" | "done" | "broken" = "open"
  inboundBroken = false
  /** The peer reset the connection. */
  peerReset = false
  /** The application aborted with unread bytes: an RST for the peer. */
  appReset = false
  readonly injected: Injected = noInjections()
  readonly recvGate = new Gate()
  readonly sendGate = new Gate()
  readonly peerGate = new Gate()
  private release: Effect.Effect<void> = Effect.void
  /** The caller's own slot this connection lives in, if it was given one. */
  private ownSlot: OwnSlot | undefined
  private counted = false

  constructor(world: World, listener: ListenerImpl, target: Endpoint, atomicLimit: number) {
    this.world = world
    this.address = target.key
    this.serverInet = target.inet
    const ipv6 = target.inet !== undefined && NetAddress.isFamily(target.inet, "IPv6")
    this.appInet = loopback(ipv6, world.ephemeral() ?? 49152)
    this.appAddress = this.appInet === undefined ? undefined : NetAddress.formatInet(this.appInet)
    this.window = listener.window
    this.atomicLimit = atomicLimit
    this.peer = new PeerImpl(this)
  }

  /** The connect succeeded: the socket is the application's until released. */
  attach(release: Effect.Effect<void>, ownSlot?: OwnSlot): void {
    this.ownSlot = ownSlot
    this.release = release
    this.counted = true
    this.world.live += 1
  }

  /** A connect that failed after the handshake: the peer sees the application go. */
  abandon(): void {
    if (this.phase === "released") return
    this.phase = "released"
    this.fate = "aborted"
    this.up.fin = true
    this.world.changed()
  }

  // ------------------------------------------------- the application's end

  private outboundBlocked(syscall: string): TcpError.SendError | undefined {
    if (this.phase !== "open") return TcpError.closed(syscall, this.address)
    if (this.outbound === "done") return brokenPipe(syscall, this.address, "sending side already finished")
    if (this.outbound === "broken") return reset(syscall, this.address, "an earlier send stopped halfway")
    if (this.peerReset) return reset(syscall, this.address)
    return undefined
  }

  send(chunks: ReadonlyArray<Uint8Array>, deadline: Deadline.Deadline): Effect.Effect<void, TcpError.SendError> {
    const injected = this.injected.send.shift()
    if (injected !== undefined) return Effect.fail(injected)
    const data = concat(chunks)
    const onTimeout = () => TcpError.timedOut("send", this.address)
    let sent = 0
    let waited = false
    const sending = this.world.until(deadline, onTimeout, () => {
      const blocked = this.outboundBlocked("send")
      if (blocked !== undefined) return Effect.fail(blocked)
      const room = this.window - this.up.size
      if (room > 0 && sent < data.length) {
        const n = Math.min(room, data.length - sent)
        this.up.push(data.subarray(sent, sent + n))
        sent += n
        this.world.changed()
      }
      if (sent === data.length) return Effect.void
      waited = true
      return undefined
    })
    // A send that had to wait and failed may have sent part of its bytes.
    const guarded = Effect.onExit(sending, (exit) =>
      Effect.sync(() => {
        if (Exit.isFailure(exit) && waited && this.outbound === "open") this.outbound = "broken"
      }))
    return this.sendGate.run(guarded, deadline, onTimeout)
  }

  done(deadline: Deadline.Deadline): Effect.Effect<void, TcpError.SendError> {
    const injected = this.injected.done.shift()
    if (injected !== undefined) return Effect.fail(injected)
    return this.sendGate.run(
      Effect.suspend(() => {
        const blocked = this.outboundBlocked("done")
        if (blocked !== undefined) return Effect.fail(blocked)
        this.outbound = "done"
        this.up.fin = true
        this.world.changed()
        return Effect.void
      }),
      deadline,
      () => TcpError.timedOut("done", this.address)
    )
  }

  private stepRecv(fill: Fill, atomic: boolean): Effect.Effect<void, TcpError.RecvError> | undefined {
    if (this.phase !== "open") return Effect.fail(TcpError.closed("recv", this.address))
    if (this.inboundBroken) return Effect.fail(reset("recv", this.address, "an earlier receive stopped halfway"))
    if (this.peerReset) return Effect.fail(reset("recv", this.address))
    const available = this.down.size
    if (available >= fill.wanted) {
      fill.put(this.down.take(fill.wanted))
      return Effect.void
    }
    if (!atomic && available > 0) fill.put(this.down.take(available))
    if (this.down.fin) {
      fill.put(this.down.take(this.down.size))
      return Effect.fail(TcpError.peerClosed("recv", fill.collect(), this.address))
    }
    return undefined
  }

  recv(
    targets: ReadonlyArray<Uint8Array>,
    total: number,
    deadline: Deadline.Deadline
  ): Effect.Effect<void, TcpError.RecvError> {
    const injected = this.injected.recv.shift()
    if (injected !== undefined) return Effect.fail(injected)
    const fill = new Fill(targets, total)
    const atomic = total <= this.atomicLimit
    const onTimeout = () => TcpError.timedOut("recv", this.address)
    const reading = this.world.until(deadline, onTimeout, () => this.stepRecv(fill, atomic))
    // Stopping halfway (not at the peer's FIN) leaves the inbound direction unusable.
    const guarded = Effect.onExit(reading, (exit) =>
      Effect.sync(() => {
        if (Exit.isFailure(exit) && !this.down.fin && fill.filled > 0 && fill.filled < total) {
          this.inboundBroken = true
        }
      }))
    return this.recvGate.run(guarded, deadline, onTimeout)
  }

  recvSome(max: number, deadline: Deadline.Deadline): Effect.Effect<Uint8Array, TcpError.RecvError> {
    const injected = this.injected.recv.shift()
    if (injected !== undefined) return Effect.fail(injected)
    const onTimeout = () => TcpError.timedOut("recv", this.address)
    const step = (): Effect.Effect<Uint8Array, TcpError.RecvError> | undefined => {
      if (this.phase !== "open") return Effect.fail(TcpError.closed("recv", this.address))
      if (this.inboundBroken) return Effect.fail(reset("recv", this.address, "an earlier receive stopped halfway"))
      if (this.peerReset) return Effect.fail(reset("recv", this.address))
      if (this.down.size > 0) return Effect.succeed(this.down.take(max))
      if (this.down.fin) return Effect.fail(TcpError.peerClosed("recv", new Uint8Array(0), this.address))
      return undefined
    }
    return this.recvGate.run(this.world.until(deadline, onTimeout, step), deadline, onTimeout)
  }

  /** FIN after what was sent, and discard inbound bytes from now on. */
  private beginClose(): void {
    this.phase = "closing"
    if (this.outbound !== "done") this.up.fin = true
    this.outbound = "done"
    this.down.clear()
    this.world.changed()
  }

  private awaitPeerFin(deadline: Deadline.Deadline): Effect.Effect<void, TcpError.CloseError> {
    return this.world.until(
      deadline,
      () => TcpError.timedOut("close", this.address),
      (): Effect.Effect<void, TcpError.ConnReset> | undefined =>
        this.peerReset ? Effect.fail(reset("close", this.address)) : this.down.fin ? Effect.void : undefined
    ).pipe(Effect.tap(() =>
      Effect.sync(() => {
        this.fate ??= "closed"
      })
    ))
  }

  close(deadline: Deadline.Deadline): Effect.Effect<void, TcpError.CloseError> {
    const injected = this.injected.close.shift()
    if (injected !== undefined) return Effect.andThen(this.abort, Effect.fail(injected))
    return Effect.suspend(() => {
      if (this.phase !== "open") return Effect.fail(TcpError.closed("close", this.address))
      this.beginClose()
      return Effect.ensuring(this.awaitPeerFin(deadline), this.abort)
    })
  }

  /** Immediate close: RST if unread bytes are pending, else FIN. Always succeeds. */
  readonly abort: Effect.Effect<void> = Effect.uninterruptible(Effect.suspend(() => {
    if (this.phase === "released") return Effect.void
    this.phase = "released"
    this.fate ??= "aborted"
    if (this.fate === "aborted" && this.down.size > 0 && !this.peerReset) {
      this.appReset = true
      this.up.clear()
    } else {
      this.up.fin = true
    }
    this.down.clear()
    if (this.counted) this.world.live -= 1
    this.world.changed()
    return this.release
  }))

  /**
   * The scope's finalizer: after success the FIN goes now and the rest of
   * the graceful close runs in the layer's background scope; otherwise abort.
   */
  finalize(exit: Exit.Exit<unknown, unknown>, closeTimeout: Duration.Duration): Effect.Effect<void> {
    if (Exit.isFailure(exit)) return this.abort
    return Effect.suspend(() => {
      if (this.phase !== "open") return Effect.void
      this.beginClose()
      if (this.ownSlot !== undefined) this.ownSlot.closing = true
      const lingering = Deadline.after(closeTimeout).pipe(
        Effect.flatMap((deadline) => this.awaitPeerFin(deadline)),
        Effect.ignore,
        Effect.ensuring(this.abort)
      )
      return Effect.asVoid(Effect.forkIn(lingering, this.world.background))
    })
  }

  appState(): AppState {
    if (this.phase === "released") return this.fate ?? "aborted"
    if (this.phase === "closing") return "closing"
    return this.outbound === "done" ? "done" : "open"
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
      if (link.peerReset || link.down.fin) return
      link.down.fin = true
      link.world.changed()
    })
  }

  get reset(): Effect.Effect<void> {
    return Effect.sync(() => {
      const link = this.link
      if (link.peerReset) return
      link.peerReset = true
      link.down.clear()
      link.up.clear()
      link.world.changed()
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
      undelivered: this.link.down.size
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
      undelivered: this.link.down.size
    }
  }
}

const peerSend = Effect.fn("TcpTest.Peer.send")(
  function*(link: Link, data: Uint8Array | string): Effect.fn.Return<void, TcpError.SendError> {
    const address = link.appAddress
    const bytes = typeof data === "string" ? utf8.encode(data) : isBytes(data) ? data.slice() : undefined
    if (bytes === undefined) return yield* TcpError.invalid("send", "expected a Uint8Array or a string", address)
    if (link.peerReset) return yield* TcpError.closed("send", address)
    if (link.down.fin) return yield* brokenPipe("send", address, "sending side already finished")
    if (link.phase === "released") {
      return yield* link.appReset
        ? reset("send", address)
        : brokenPipe("send", address, "the application closed the connection")
    }
    // A closing application reads and discards until our FIN.
    if (link.phase === "closing") return
    link.down.push(bytes)
    link.world.changed()
  }
)

/** Why the peer cannot receive any more, if it cannot. */
const peerBlocked = (link: Link): TcpError.Closed | TcpError.ConnReset | undefined =>
  link.peerReset
    ? TcpError.closed("recv", link.appAddress)
    : link.appReset
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
      link.world.changed()
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
      link.world.changed()
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
  readonly backlog: number
  readonly window: number
  readonly incoming: Array<Link> = []
  readonly injected: Injected = noInjections()
  closed = false

  constructor(world: World, endpoint: Endpoint, backlog: number, window: number) {
    super()
    this.world = world
    this.key = endpoint.key
    this.address = endpoint.key
    this.port = endpoint.port
    this.backlog = backlog
    this.window = window
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
      else link.peerReset = true
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
    return yield* listener.world.until(
      deadline,
      () => TcpError.timedOut("accept", listener.address),
      (): Effect.Effect<Peer, TcpError.Closed> | undefined => {
        if (listener.closed) return Effect.fail(TcpError.closed("accept", listener.address))
        const link = listener.incoming.shift()
        if (link === undefined) return undefined
        if (link.handshake === "pending") listener.establish(link)
        listener.admit()
        return Effect.succeed(link.peer)
      }
    )
  }
)

const listenIn = (
  world: World,
  address: unknown,
  options: ListenOptions | undefined
): Effect.Effect<ListenerImpl, TcpError.InvalidArgument | TcpError.AddrInUse> =>
  Effect.suspend((): Effect.Effect<ListenerImpl, TcpError.InvalidArgument | TcpError.AddrInUse> => {
    const parsed = parseEndpoint(address, "listen", true)
    if (Result.isFailure(parsed)) return Effect.fail(parsed.failure)
    let endpoint = parsed.success
    const backlog: unknown = options?.backlog === undefined ? 0 : options.backlog
    const window: unknown = options?.window === undefined ? Number.POSITIVE_INFINITY : options.window
    if (!isCount(backlog, 0) || !isLimit(window)) {
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
    const listener = new ListenerImpl(world, endpoint, backlog, window)
    world.listeners.set(endpoint.key, listener)
    return Effect.succeed(listener)
  })

const failConnectIn = (
  world: World,
  address: unknown,
  error: TcpError.ConnectError,
  options: FailOptions | undefined
): Effect.Effect<void, TcpError.InvalidArgument> =>
  Effect.suspend(() => {
    const parsed = parseEndpoint(address, "connect", false)
    if (Result.isFailure(parsed)) return Effect.fail(parsed.failure)
    const key = parsed.success.key
    const times: unknown = options?.times === undefined ? Number.POSITIVE_INFINITY : options.times
    if (!isLimit(times)) {
      return Effect.fail(TcpError.invalid("connect", "times must be a positive integer", key))
    }
    const rules = world.rules.get(key) ?? []
    rules.push({ error, remaining: times })
    world.rules.set(key, rules)
    return Effect.void
  })

// --------------------------------------------------- the application's socket

/** The application's end of a `Link`, behind the public `TcpSocket` interface. */
class MemorySocket extends Inspectable.Class implements TcpSocket.TcpSocket {
  readonly [TcpSocket.TypeId] = TcpSocket.TypeId
  readonly link: Link
  readonly closeTimeout: Duration.Duration
  constructor(link: Link, closeTimeout: Duration.Duration) {
    super()
    this.link = link
    this.closeTimeout = closeTimeout
  }
  send(bytes: Uint8Array, options?: Deadline.Options) {
    return socketSend(this.link, isBytes(bytes) ? [bytes] : undefined, options)
  }
  sendv(chunks: ReadonlyArray<Uint8Array>, options?: Deadline.Options) {
    return socketSend(this.link, bytesList(chunks), options)
  }
  recv(n: number, options?: Deadline.Options) {
    return socketRecv(this.link, n, options)
  }
  recvInto(buffer: Uint8Array, options?: Deadline.Options) {
    return socketReceive(this.link, isBytes(buffer) ? [buffer] : undefined, options)
  }
  recvv(buffers: ReadonlyArray<Uint8Array>, options?: Deadline.Options) {
    return socketReceive(this.link, bytesList(buffers), options)
  }
  recvSome(max: number, options?: Deadline.Options) {
    return socketRecvSome(this.link, max, options)
  }
  done(options?: Deadline.Options) {
    return socketDone(this.link, options)
  }
  close(options?: Deadline.Options) {
    return socketClose(this.link, this.closeTimeout, options)
  }
  get abort() {
    return this.link.abort
  }
  get stream(): Stream.Stream<Uint8Array, Exclude<TcpError.RecvError, TcpError.PeerClosed>> {
    return TcpSocket.stream(this)
  }
  get sink(): Sink.Sink<void, Uint8Array, never, TcpError.SendError> {
    return TcpSocket.sink(this)
  }
  get localAddress() {
    return this.link.appInet
  }
  get remoteAddress() {
    return this.link.serverInet
  }
  pipe() {
    return pipeArguments(this, arguments)
  }
  /** Like a Node socket's: addresses, state and sizes, never the bytes in flight. */
  toJSON() {
    return {
      _id: "TcpSocket",
      inMemory: true,
      remoteAddress: this.link.address,
      localAddress: this.link.appAddress,
      state: this.link.appState(),
      unread: this.link.down.size,
      unsent: this.link.up.size
    }
  }
}

const socketSend = Effect.fn("TcpTest.send")(
  function*(
    link: Link,
    chunks: ReadonlyArray<Uint8Array> | undefined,
    options?: Deadline.Options
  ): Effect.fn.Return<void, TcpError.SendError> {
    if (chunks === undefined) {
      return yield* TcpError.invalid("send", "expected a Uint8Array or an array of them", link.address)
    }
    const deadline = yield* Deadline.resolve(options, "send", link.address)
    return yield* link.send(chunks, deadline)
  }
)

const socketReceive = Effect.fn("TcpTest.recvInto")(
  function*(
    link: Link,
    targets: ReadonlyArray<Uint8Array> | undefined,
    options?: Deadline.Options
  ): Effect.fn.Return<void, TcpError.RecvError> {
    if (targets === undefined) {
      return yield* TcpError.invalid("recv", "expected a Uint8Array or an array of them", link.address)
    }
    const deadline = yield* Deadline.resolve(options, "recv", link.address)
    return yield* link.recv(targets, targets.reduce((n, target) => n + target.length, 0), deadline)
  }
)

const socketRecvSome = Effect.fn("TcpTest.recvSome")(
  function*(link: Link, max: number, options?: Deadline.Options): Effect.fn.Return<Uint8Array, TcpError.RecvError> {
    if (!Number.isSafeInteger(max) || max < 1) {
      return yield* TcpError.invalid("recv", "max must be a positive integer", link.address)
    }
    const deadline = yield* Deadline.resolve(options, "recv", link.address)
    return yield* link.recvSome(max, deadline)
  }
)

const socketRecv = Effect.fn("TcpTest.recv")(
  function*(link: Link, n: number, options?: Deadline.Options): Effect.fn.Return<Uint8Array, TcpError.RecvError> {
    if (!Number.isSafeInteger(n) || n < 0 || n > kMaxLength) {
      return yield* TcpError.invalid("recv", `length must be an integer in 0..${kMaxLength}`, link.address)
    }
    let bytes: Uint8Array
    try {
      bytes = new Uint8Array(n)
    } catch {
      return yield* TcpError.invalid("recv", `cannot allocate ${n} bytes`, link.address)
    }
    const deadline = yield* Deadline.resolve(options, "recv", link.address)
    yield* link.recv([bytes], n, deadline)
    return bytes
  }
)

const socketDone = Effect.fn("TcpTest.done")(
  function*(link: Link, options?: Deadline.Options): Effect.fn.Return<void, TcpError.SendError> {
    const deadline = yield* Deadline.resolve(options, "done", link.address)
    return yield* link.done(deadline)
  }
)

const socketClose = Effect.fn("TcpTest.close")(
  function*(
    link: Link,
    closeTimeout: Duration.Duration,
    options?: Deadline.Options
  ): Effect.fn.Return<void, TcpError.CloseError> {
    const deadline = options?.deadline === undefined && options?.timeout === undefined
      ? yield* Deadline.after(closeTimeout)
      : yield* Deadline.resolve(options, "close", link.address)
    return yield* link.close(deadline)
  }
)

// ------------------------------------------------------------------ client

const makeClient = (world: World): TcpClient.TcpClient["Service"] => {
  const connect = Effect.fn("TcpTest.connect")(
    function*(
      address: TcpClient.TcpAddress,
      options?: TcpClient.ConnectOptions
    ): Effect.fn.Return<TcpSocket.TcpSocket, TcpError.ConnectError, Scope.Scope> {
      const target = yield* Effect.fromResult(parseEndpoint(address, "connect", false))
      const text = target.key
      const closeTimeout = yield* Effect.fromResult(checkSettings(options, "connect", text))
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
      const storage = options?.storage
      const atomicLimit = isSlot(storage) && typeof storage.bufferSize === "number"
        ? storage.bufferSize
        : world.storage.bufferSize
      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(world.claim(storage, deadline, text)), ({ own, release }) =>
          restore(world.dial(target, deadline, atomicLimit)).pipe(
            Effect.onError(() => release),
            Effect.flatMap((link) => {
              link.attach(release, own)
              return Effect.as(
                Effect.addFinalizer((exit) => link.finalize(exit, closeTimeout)),
                new MemorySocket(link, closeTimeout)
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

  return TcpClient.TcpClient.of({ connect, fromFd })
}

// ----------------------------------------------------------------- service

const build: Effect.Effect<
  Context.Context<TcpTest | TcpClient.TcpClient>,
  never,
  TcpStorage.TcpStorage | Scope.Scope
> = Effect.gen(function*() {
  const storage = yield* TcpStorage.TcpStorage
  const world = new World(storage, yield* Effect.scope)
  const control = TcpTest.of({
    listen: (address, options) =>
      Effect.acquireRelease(listenIn(world, address, options), (listener) => listener.close),
    failConnect: (address, error, options) => failConnectIn(world, address, error, options),
    openSockets: Effect.sync(() => world.live)
  })
  return Context.make(TcpTest, control).pipe(Context.add(TcpClient.TcpClient, makeClient(world)))
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
