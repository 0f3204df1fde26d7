/**
 * Listening sockets: libdill's `tcp_listen` / `tcp_accept` /
 * `tcp_listener_fromfd`.
 *
 * Node accepts every completed connection at once, whether or not `accept`
 * is waiting. Connections not yet taken wait in a bounded queue (`pending`,
 * default = `backlog`); past it, new connections are closed at once, so
 * memory stays bounded whatever the connect rate.
 *
 * Accepted sockets read into their storage slot like connected ones: Node's
 * `net.Server` ignores `onread`, so each accepted handle moves, still paused
 * and unread, into a new `net.Socket` built with `onread` over the slot. That
 * costs one small object per accept and no copy per read, where the
 * alternative (reading Node's fresh chunk per read and copying it into the
 * slot) costs an allocation and a copy on every read.
 *
 * @since 0.1.0
 */
import {
  Cause,
  Context,
  Duration,
  Effect,
  Exit,
  Function as Fn,
  Inspectable,
  Option,
  Predicate,
  Schedule,
  Scope as ScopeModule,
  Semaphore
} from "effect"
import type { Scope } from "effect"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import { NetAddress } from "effect/net"
import * as Net from "node:net"
import * as Deadline from "./Deadline.ts"
import {
  describe as describeAddress,
  fromNode,
  isTcpDescriptor,
  nodeHost,
  parse,
  peerOf,
  type TcpAddress
} from "./internal/address.ts"
import { acceptedConnection } from "./internal/node/transport.ts"
import { observed } from "./internal/observe.ts"
import { poolOf } from "./internal/storage.ts"
import { attach } from "./internal/tcpSocket.ts"
import {
  applySettings,
  badDescriptor,
  isCount,
  isDescriptor,
  listenSettings,
  orDefault,
  resolveSettings,
  type SocketSettings
} from "./internal/options.ts"
import { claim, type Pool, type SlotMemory, unclaim } from "./internal/pool.ts"
import { awaitEvent } from "./internal/wait.ts"
import * as TcpError from "./TcpError.ts"
import * as TcpSocket from "./TcpSocket.ts"
import { TcpStorage } from "./TcpStorage.ts"
import type * as TcpStorageModule from "./TcpStorage.ts"
import type * as TcpTls from "./TcpTls.ts"
import { checkedDuration } from "./internal/options.ts"
import { prepareOnce } from "./internal/tls.ts"
import { defaultHandshakeTimeout, TlsListener } from "./internal/tlsListener.ts"

/**
 * @since 0.1.0
 */
export const TypeId: "~effect-tcp/TcpListener" = "~effect-tcp/TcpListener"

/**
 * A listening socket. Printed, it shows its address, state and queue
 * sizes, never bytes or the pool's slots.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpListener } from "effect-tcp"
 * const echoOnce = Effect.gen(function*() {
 *   const listener = yield* TcpListener.listen("127.0.0.1:0")
 *   const socket = yield* listener.accept({ timeout: "5 seconds" })
 *   yield* socket.send(yield* socket.recv(3))
 * }).pipe(Effect.scoped)
 * ```
 * @since 0.1.0
 */
export interface TcpListener<out TlsE = never> extends Pipeable, Inspectable.Inspectable {
  readonly [TypeId]: typeof TypeId
  /** The bound address (with the port the kernel picked for port 0). */
  readonly address: NetAddress.InetAddress
  /** The bound port. */
  readonly port: number
  /**
   * libdill's `tcp_accept` / `tcp_accept_mem`: the next connection, waiting
   * within the deadline. The socket lives in the current scope.
   *
   * A storage slot is taken from the pool only once a connection is there
   * for it: an accept that is only waiting holds none. Waiting for a slot
   * (pool `"wait"`) counts against the same deadline; when no slot can be
   * had (`TimedOut`, `OutOfMemory` from a `"fail"` pool, interruption) the
   * connection is not lost but stays first in the queue for the next
   * accept. A caller's own slot (`{ storage }`) is checked and claimed
   * before waiting.
   *
   * On a TLS listener (`listen` with `tls`) the handshake completes within
   * the same deadline, so `TlsHandshakeFailed` and `CertificateRejected`
   * are possible too; the connection is then closed.
   */
  accept(options?: AcceptOptions): Effect.Effect<TcpSocket.TcpSocket, TcpError.AcceptError | TlsE, Scope.Scope>
  /**
   * Stops listening and closes connections not yet accepted (those still
   * queued, and one an `accept` holds while it waits for a storage slot);
   * waiting `accept`s fail with `Closed`. Accepted sockets are not
   * affected, so a `serve` on this listener lets its running handlers
   * finish. Always succeeds.
   */
  readonly close: Effect.Effect<void>
}

/**
 * Options for `listen`: `backlog` sizes the kernel's queue (default 511),
 * `pending` the queue of connections Node accepted that no `accept` took yet
 * (default = `backlog`), `reusePort` shares the port with other listeners,
 * and `tls` makes every connection TLS.
 *
 * @example
 * ```ts
 * import type { TcpListener } from "effect-tcp"
 * const options: TcpListener.ListenOptions = { backlog: 128, pending: 64 }
 * ```
 * @since 0.1.0
 */
export interface ListenOptions {
  readonly backlog?: number | undefined
  readonly pending?: number | undefined
  /**
   * `SO_REUSEPORT`: several processes or worker threads listen on the same
   * address and port, and the kernel spreads incoming connections across
   * them, so a server scales across cores (see `scratchpad/workers.ts`).
   * Linux 3.9+, FreeBSD 12+, DragonFly BSD and a few others; where the
   * platform has no such option, `listen` fails (`SystemError` or
   * `InvalidArgument`, from Node's refusal). Under `TcpTest.layer` it is
   * accepted and changes nothing: one listener per address.
   */
  readonly reusePort?: boolean | undefined
  /**
   * TLS on every connection (libdill's `tls_attach_server`): `accept`
   * completes the handshake within its deadline; `serve` runs it before the
   * handler, within `handshakeTimeout`, and closes (and counts) a client
   * that fails or stalls it, so no handler sees it.
   */
  readonly tls?: TcpTls.ServerOptions | undefined
}

/**
 * Options for `accept`: deadline/timeout, the caller's own storage slot, and
 * socket settings.
 *
 * @example
 * ```ts
 * import type { TcpListener } from "effect-tcp"
 * const options: TcpListener.AcceptOptions = { timeout: "10 seconds", noDelay: true }
 * ```
 * @since 0.1.0
 */
export interface AcceptOptions extends Deadline.Options, SocketSettings {
  readonly storage?: TcpStorageModule.Slot | undefined
}

/**
 * Whether a value is a `TcpListener`.
 *
 * @example
 * ```ts
 * import { TcpListener } from "effect-tcp"
 * TcpListener.isTcpListener({}) // false
 * ```
 * @since 0.1.0
 */
export const isTcpListener = (u: unknown): u is TcpListener => Predicate.hasProperty(u, TypeId)

/** A connection Node accepted, with the peer's address read while it was known. */
interface Incoming {
  readonly raw: Net.Socket
  readonly peer: string | undefined
}

interface Acceptor {
  incoming: Incoming | undefined
  error: TcpError.AcceptError | undefined
  wake: () => void
}


class TcpListenerImpl extends Inspectable.Class implements TcpListener {
  readonly [TypeId] = TypeId
  readonly server: Net.Server
  readonly pool: Pool
  readonly pending: number
  address: NetAddress.InetAddress
  text: string
  /**
   * Connections waiting for an accept, and accepts waiting for a
   * connection. Not effect's `Queue`: a connection an accept could not use
   * goes back to the head, which `Queue` cannot do; a server error goes to
   * one waiting accept ahead of queued connections, where `Queue.fail` would
   * end every taker; and a `Queue` keeps a message until its woken taker's
   * fiber runs, so connections handed to waiting accepts would count against
   * `pending` and a burst would close some. A bounded `Queue` also measured
   * slower on connect+accept (scratchpad/accept-bench.ts).
   */
  private readonly queue: Array<Incoming> = []
  private readonly acceptors: Array<Acceptor> = []
  /** Accepts holding a connection while they wait for a storage slot: told when the listener closes. */
  private readonly slotWaiters = new Set<() => void>()
  private acceptError: TcpError.AcceptError | undefined
  private closed = false

  constructor(server: Net.Server, pool: Pool, pending: number, address: NetAddress.InetAddress) {
    super()
    this.server = server
    this.pool = pool
    this.pending = pending
    this.address = address
    this.text = NetAddress.formatInet(address)
    server.on("connection", (raw: Net.Socket) => this.onConnection(raw))
    server.on("error", (error) => this.onError(error))
  }

  get port(): number {
    return this.address.port
  }

  toJSON() {
    return {
      _id: "TcpListener",
      address: this.text,
      state: this.closed ? "closed" : "listening",
      queued: this.queue.length,
      pending: this.pending,
      waitingAccepts: this.acceptors.length
    }
  }

  pipe() {
    return pipeArguments(this, arguments)
  }

  accept(options?: AcceptOptions) {
    return accept(this, options)
  }

  readonly close: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (!this.closed) {
      this.closed = true
      for (const { raw } of this.queue.splice(0)) raw.destroy()
      for (const acceptor of this.acceptors.splice(0)) {
        acceptor.error = TcpError.closed("accept", this.text)
        acceptor.wake()
      }
      for (const wake of this.slotWaiters) wake()
      this.slotWaiters.clear()
    }
    // The listening descriptor closes now. Node's close callback would also
    // wait for every connection the server still counts, and accepted
    // sockets read by copying (see internal/node/transport.ts) stay counted.
    if (this.server.listening) this.server.close()
    resume(Effect.void)
  }).pipe(Effect.uninterruptible)

  private onConnection(raw: Net.Socket): void {
    // A paused connection reads nothing; errors on it surface once accepted.
    raw.on("error", () => {})
    if (this.closed) return void raw.destroy()
    this.offer({ raw, peer: peerOf(raw) }, false)
  }

  /**
   * Hands a connection to the first waiting accept, else queues it (at the
   * head when it is being given back). A connection given back to a closed
   * listener is closed, like every connection it had not handed out.
   */
  private offer(incoming: Incoming, givenBack: boolean): void {
    if (this.closed) return void incoming.raw.destroy()
    const acceptor = this.acceptors.shift()
    if (acceptor !== undefined) {
      acceptor.incoming = incoming
      acceptor.wake()
    } else if (givenBack) {
      this.queue.unshift(incoming)
    } else if (this.queue.length < this.pending) {
      this.queue.push(incoming)
    } else {
      incoming.raw.destroy()
    }
  }

  private onError(cause: Error): void {
    const error = TcpError.narrow(TcpError.fromUnknown(cause, "accept", this.text), TcpError.acceptTags)
    const acceptor = this.acceptors.shift()
    if (acceptor === undefined) {
      this.acceptError = error
      return
    }
    acceptor.error = error
    acceptor.wake()
  }

  /** The next queued connection, waiting within `deadline`. */
  take(deadline: Deadline.Deadline): Effect.Effect<Incoming, TcpError.AcceptError> {
    return Effect.suspend((): Effect.Effect<Incoming, TcpError.AcceptError> => {
      if (this.closed) return Effect.fail(TcpError.closed("accept", this.text))
      const error = this.acceptError
      if (error !== undefined) {
        this.acceptError = undefined
        return Effect.fail(error)
      }
      const queued = this.queue.shift()
      if (queued !== undefined) return Effect.succeed(queued)
      const acceptor: Acceptor = { incoming: undefined, error: undefined, wake: () => {} }
      const waiting = awaitEvent<Incoming, TcpError.AcceptError, TcpError.TimedOut>(
        deadline,
        () => TcpError.timedOut("accept", this.text),
        (resume) => {
          acceptor.wake = () =>
            resume(acceptor.incoming !== undefined ? Effect.succeed(acceptor.incoming) : Effect.fail(
              acceptor.error ?? TcpError.closed("accept", this.text)
            ))
          this.acceptors.push(acceptor)
          return () => {
            const index = this.acceptors.indexOf(acceptor)
            if (index !== -1) this.acceptors.splice(index, 1)
          }
        }
      )
      // A connection handed over while the wait was being abandoned goes
      // back to the head of the queue for the next accept.
      return Effect.onExit(waiting, (exit) =>
        Effect.sync(() => {
          if (Exit.isFailure(exit) && acceptor.incoming !== undefined) this.giveBack(acceptor.incoming)
        }))
    })
  }

  /** A connection taken by an accept that then failed: first in line for the next accept. */
  giveBack(incoming: Incoming): void {
    this.offer(incoming, true)
  }

  /**
   * A pool slot for a connection already taken, within `deadline`. A free
   * slot (or the pool's `OutOfMemory` when it fails fast) is known at once;
   * only an exhausted `"wait"` pool waits, and then the listener's close
   * ends the wait with `Closed`, as it ends every waiting accept.
   */
  slotFor(deadline: Deadline.Deadline): Effect.Effect<SlotMemory, TcpError.AcceptError> {
    const now = claim(this.pool, undefined, 0, "accept", this.text)
    const later = deadline === 0 ? now : Effect.catchTag(
      now,
      "TimedOut",
      () => Effect.raceFirst(claim(this.pool, undefined, deadline, "accept", this.text), this.closing)
    )
    return Effect.flatMap(later, (slot) => {
      if (!this.closed) return Effect.succeed(slot)
      unclaim(slot)
      return Effect.fail(TcpError.closed("accept", this.text))
    })
  }

  /** Fails with `Closed` once the listener closes. */
  private readonly closing: Effect.Effect<never, TcpError.Closed> = Effect.callback<never, TcpError.Closed>(
    (resume) => {
      const wake = () => resume(Effect.fail(TcpError.closed("accept", this.text)))
      if (this.closed) return wake()
      this.slotWaiters.add(wake)
      return Effect.sync(() => this.slotWaiters.delete(wake))
    }
  )
}

/** Moves an accepted, still paused handle into a socket that reads into `slot`. */
/**
 * Takes a connection, then the slot it will live in, both within the one
 * deadline. A pool slot is taken only once there is a connection for it, so
 * an accept that is only waiting holds none. The caller's own slot
 * (`storage`) is claimed first: it is theirs already, and a bad one fails at
 * once rather than when a client comes. When no pool slot can be had
 * (`TimedOut`, `OutOfMemory`, interruption, `Closed`), the connection goes
 * back to the head of the queue for the next accept, or is closed if the
 * listener is.
 */
const accept = Effect.fn("TcpListener.accept")(function*(listener: TcpListenerImpl, options?: AcceptOptions) {
  const settings = yield* Effect.fromResult(resolveSettings(options, "accept", listener.text))
  const deadline = yield* Deadline.resolve(options, "accept", listener.text)
  const open = (slot: SlotMemory, { peer, raw }: Incoming) => {
    const conn = acceptedConnection(raw, slot, peer, () => unclaim(slot))
    applySettings(conn.transport.socket, settings)
    return attach(conn, settings.closeTimeout, listener.pool)
  }
  const storage = options?.storage
  return yield* Effect.uninterruptibleMask((restore) =>
    storage !== undefined
      ? Effect.flatMap(
        restore(claim(listener.pool, storage, deadline, "accept", listener.text)),
        (slot) =>
          restore(listener.take(deadline)).pipe(
            Effect.onExit((exit) => Exit.isFailure(exit) ? Effect.sync(() => unclaim(slot)) : Effect.void),
            Effect.flatMap((incoming) => open(slot, incoming))
          )
      )
      : Effect.flatMap(
        restore(listener.take(deadline)),
        (incoming) =>
          restore(listener.slotFor(deadline)).pipe(
            Effect.onExit((exit) =>
              Exit.isFailure(exit) ? Effect.sync(() => listener.giveBack(incoming)) : Effect.void
            ),
            Effect.flatMap((slot) => open(slot, incoming))
          )
      )
  )
}, (
  effect: Effect.Effect<TcpSocket.TcpSocket, TcpError.AcceptError, Scope.Scope>,
  listener: TcpListenerImpl,
  _options?: AcceptOptions
) => observed("accept", effect, listener.pool))

/**
 * Starts `server` listening and wraps it; the listener lives in the current
 * scope.
 */
const open = (
  listenOn: (server: Net.Server) => void,
  pool: Pool,
  pending: number,
  text: string
): Effect.Effect<TcpListener, TcpError.ListenError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<TcpListenerImpl, TcpError.ListenError>((resume) => {
      const server = Net.createServer({ allowHalfOpen: true, pauseOnConnect: true })
      const onError = (cause: Error) => {
        server.off("listening", onListening)
        resume(Effect.fail(TcpError.narrow(TcpError.fromUnknown(cause, "listen", text), TcpError.listenTags)))
      }
      const onListening = () => {
        server.off("error", onError)
        const bound = server.address()
        const address = typeof bound === "object" && bound !== null ? fromNode(bound.address, bound.port) : undefined
        if (address === undefined) {
          server.close()
          return resume(Effect.fail(TcpError.invalid("listen", "not a TCP listener", text)))
        }
        resume(Effect.succeed(new TcpListenerImpl(server, pool, pending, address)))
      }
      server.once("error", onError)
      server.once("listening", onListening)
      try {
        listenOn(server)
      } catch (cause) {
        server.off("error", onError)
        server.off("listening", onListening)
        resume(Effect.fail(TcpError.narrow(TcpError.fromUnknown(cause, "listen", text), TcpError.listenTags)))
      }
    }),
    (listener) => listener.close
  )

/**
 * A network listeners can open on other than the kernel's: what
 * `TcpTest.layer` sets (see `Listening`), so a program's own servers and
 * clients reach each other in memory.
 *
 * @example
 * ```ts
 * import type { TcpListener } from "effect-tcp"
 * declare const network: TcpListener.Network
 * network.listen("127.0.0.1:0", undefined)
 * ```
 * @since 0.1.0
 */
export interface Network {
  readonly listen: (
    address: TcpAddress,
    options: ListenOptions | undefined
  ) => Effect.Effect<TcpListener, TcpError.ListenError, Scope.Scope>
  readonly fromFd: (fd: number, options: ListenOptions | undefined) => Effect.Effect<TcpListener, TcpError.ListenError>
}

/**
 * The network `listen` and `fromFd` open on: unset (the default), the
 * kernel's, through Node; `TcpTest.layer` sets its in-memory one.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpListener } from "effect-tcp"
 * const inMemory = Effect.map(TcpListener.Listening.asEffect(), (network) => network !== undefined)
 * ```
 * @since 0.1.0
 */
export const Listening: Context.Reference<Network | undefined> = Context.Reference<Network | undefined>(
  "effect-tcp/TcpListener/Listening",
  { defaultValue: () => undefined }
)

/**
 * `listen`'s signature: without `tls` in its options the listener's
 * accepts cannot fail with a TLS error, and its type says so.
 *
 * @example
 * ```ts
 * import type { TcpListener } from "effect-tcp"
 * declare const listen: TcpListener.Listen
 * const plain = listen("127.0.0.1:0") // a TcpListener whose accepts have no TLS error
 * ```
 * @since 0.1.0
 */
export interface Listen {
  (
    address: TcpAddress,
    options?: ListenOptions & { readonly tls?: undefined }
  ): Effect.Effect<TcpListener, TcpError.ListenError, Scope.Scope | TcpStorage>
  (
    address: TcpAddress,
    options?: ListenOptions
  ): Effect.Effect<TcpListener<TcpError.TlsError>, TcpError.ListenError, Scope.Scope | TcpStorage>
}

/**
 * libdill's `tcp_listen`: listens on `address` (port `0` picks a free port,
 * `listener.port` tells which). Names resolve through the operating system.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpListener, TcpNode } from "effect-tcp"
 * const program = Effect.gen(function*() {
 *   const listener = yield* TcpListener.listen("127.0.0.1:0", { backlog: 128 })
 *   yield* Effect.log(`listening on ${listener.port}`)
 * }).pipe(Effect.scoped, Effect.provide(TcpNode.layer))
 * ```
 * @since 0.1.0
 */
export const listen: Listen = Effect.fn("TcpListener.listen")(
  function*(address: TcpAddress, options?: ListenOptions): Effect.fn.Return<
    TcpListener<TcpError.TlsError>,
    TcpError.ListenError,
    Scope.Scope | TcpStorage
  > {
    // One implementation behind two signatures: only a listener with `tls` has TLS errors in its accepts.
    const network = yield* Listening
    const tls = options?.tls
    if (tls === undefined) return yield* listenPlain(network, address, options)
    const text = describeAddress(address)
    yield* Effect.fromResult(prepareOnce(tls, "server", "listen", text, network === undefined))
    const timeout = tls.handshakeTimeout === undefined
      ? Option.some(defaultHandshakeTimeout)
      : checkedDuration(tls.handshakeTimeout)
    if (Option.isNone(timeout) || Duration.isZero(timeout.value)) {
      return yield* TcpError.invalid("listen", "tls: handshakeTimeout must be a positive duration", text)
    }
    return new TlsListener(yield* listenPlain(network, address, options), tls, timeout.value)
  }
) as Listen

const listenPlain = (
  network: Network | undefined,
  address: TcpAddress,
  options: ListenOptions | undefined
): Effect.Effect<TcpListener, TcpError.ListenError, Scope.Scope | TcpStorage> =>
  Effect.gen(function*() {
    if (network !== undefined) return yield* network.listen(address, options)
    const endpoint = yield* Effect.fromResult(parse(address, "listen", true))
    const host = NetAddress.isInetAddress(endpoint) ? nodeHost(endpoint) : NetAddress.isIpAddress(endpoint.host)
      ? NetAddress.formatIp(endpoint.host)
      : endpoint.host
    const port = endpoint.port
    const text = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`
    const { backlog, pending, reusePort } = yield* Effect.fromResult(listenSettings(options, text))
    const pool = yield* poolOf(yield* TcpStorage)
    return yield* open(
      (server) => server.listen({ host, port, backlog, exclusive: true, ...(reusePort ? { reusePort } : {}) }),
      pool,
      pending,
      text
    )
  })

/**
 * libdill's `tcp_listener_fromfd`: adopts an already listening descriptor.
 *
 * @example
 * ```ts
 * import { TcpListener } from "effect-tcp"
 * TcpListener.fromFd(3)
 * ```
 * @since 0.1.0
 */
export const fromFd = Effect.fn("TcpListener.fromFd")(
  function*(fd: number, options?: ListenOptions): Effect.fn.Return<
    TcpListener,
    TcpError.ListenError,
    Scope.Scope | TcpStorage
  > {
    const network = yield* Listening
    if (network !== undefined) return yield* network.fromFd(fd, options)
    const text = `fd ${String(fd)}`
    if (!isDescriptor(fd)) return yield* TcpError.invalid("listen", badDescriptor, text)
    const { pending } = yield* Effect.fromResult(listenSettings(options, text))
    if ((yield* isTcpDescriptor(fd)) === false) return yield* TcpError.invalid("listen", "fd is not a TCP socket", text)
    const pool = yield* poolOf(yield* TcpStorage)
    return yield* open((server) => server.listen({ fd }), pool, pending, text)
  }
)

/**
 * Options for `serve`: how many connections are handled at once (default
 * `"unbounded"`; past it, connections wait in the listener's `pending`
 * queue and then the kernel's backlog), and the options of each `accept`.
 *
 * @example
 * ```ts
 * import type { TcpListener } from "effect-tcp"
 * const options: TcpListener.ServeOptions = { concurrency: 256, noDelay: true }
 * ```
 * @since 0.1.0
 */
export interface ServeOptions extends Omit<AcceptOptions, "storage"> {
  readonly concurrency?: number | "unbounded" | undefined
}

const isServeOptions = (args: IArguments) => isTcpListener(args[0])

/**
 * Accepts connections until the listener closes, running `handler` on each
 * in a scope of its own: when the handler succeeds the socket closes
 * gracefully, when it fails or is interrupted the socket is aborted. A
 * handler's failure is logged and ends only its own connection. Accept
 * errors that can pass (`TooManyOpenFiles`, `SystemFileLimit`,
 * `OutOfMemory`, ...) are logged and retried with a growing pause (up to
 * 1 s); a connection that found no storage slot stays queued for the retry.
 * `serve` fails only on invalid options.
 *
 * Stopping, gracefully: `listener.close` stops taking connections, and
 * `serve` returns once the handlers already running have ended, their
 * replies sent. Connections the listener had accepted but `serve` had not
 * taken yet (waiting for a `concurrency` permit, say) are closed with the
 * listener, unanswered. Stopping at once: interrupting `serve` (or a
 * timeout on it, to bound a drain) interrupts every handler and aborts its
 * socket.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpListener, TcpNode } from "effect-tcp"
 * const echo = Effect.gen(function*() {
 *   const listener = yield* TcpListener.listen("127.0.0.1:7000")
 *   yield* listener.pipe(TcpListener.serve((socket) =>
 *     socket.recv(4).pipe(Effect.flatMap((bytes) => socket.send(bytes)), Effect.forever), { concurrency: 64 }))
 * }).pipe(Effect.scoped, Effect.provide(TcpNode.layer))
 * ```
 * @since 0.1.0
 */
export const serve: {
  <E, R>(
    handler: (socket: TcpSocket.TcpSocket) => Effect.Effect<unknown, E, R>,
    options?: ServeOptions
  ): (self: TcpListener<TcpError.TlsError>) => Effect.Effect<void, TcpError.InvalidArgument, Exclude<R, Scope.Scope>>
  <E, R>(
    self: TcpListener<TcpError.TlsError>,
    handler: (socket: TcpSocket.TcpSocket) => Effect.Effect<unknown, E, R>,
    options?: ServeOptions
  ): Effect.Effect<void, TcpError.InvalidArgument, Exclude<R, Scope.Scope>>
} = Fn.dual(
  isServeOptions,
  Effect.fn("TcpListener.serve")(function*<E, R>(
    self: TcpListener<TcpError.TlsError>,
    handler: (socket: TcpSocket.TcpSocket) => Effect.Effect<unknown, E, R>,
    options?: ServeOptions
  ): Effect.fn.Return<void, TcpError.InvalidArgument, Exclude<R, Scope.Scope>> {
    const concurrency = orDefault(options?.concurrency, "unbounded")
    if (concurrency !== "unbounded" && !isCount(concurrency, 1)) {
      const address = NetAddress.formatInet(self.address)
      return yield* TcpError.invalid("serve", `concurrency must be a positive integer or "unbounded"`, address)
    }
    const permits = concurrency === "unbounded" ? undefined : Semaphore.makeUnsafe(concurrency)
    return yield* Effect.scoped(serveLoop(self, handler, options, permits))
  })
)

/**
 * serve's pause after an accept error that can pass: 10 ms, doubling, at
 * most 1 s. Every accept retries on a schedule of its own, so after a
 * success the pause starts again at 10 ms.
 */
const acceptBackoff = Schedule.min([Schedule.exponential("10 millis"), Schedule.spaced("1 second")])

/** Whether serve retries an accept that failed so: every error but the listener's close and bad options. */
const canPass = (
  error: TcpError.AcceptError
): error is Exclude<TcpError.AcceptError, TcpError.Closed | TcpError.InvalidArgument> =>
  error._tag !== "Closed" && error._tag !== "InvalidArgument"

const serveLoop = <E, R>(
  self: TcpListener<TcpError.TlsError>,
  handler: (socket: TcpSocket.TcpSocket) => Effect.Effect<unknown, E, R>,
  options: ServeOptions | undefined,
  permits: Semaphore.Semaphore | undefined
): Effect.Effect<void, TcpError.InvalidArgument, Exclude<R, Scope.Scope> | Scope.Scope> =>
  Effect.gen(function*() {
    const serverScope = yield* Effect.scope
    const release = permits === undefined ? Effect.void : Semaphore.release(permits, 1)
    const handlers = new Handlers()
    // On a TLS listener the handshake runs in the connection's own fiber, so
    // a client that stalls it holds up no other; one that fails it is closed
    // (and counted by the listener) and never reaches the handler.
    const tls = self instanceof TlsListener ? self : undefined
    // Only a TlsListener's accepts can fail with a TLS error, and serve accepts from the plaintext one beneath it.
    const source = tls?.plain ?? (self as TcpListener)
    const handle = (socket: TcpSocket.TcpSocket): Effect.Effect<unknown, E, R | Scope.Scope> =>
      tls === undefined ? handler(socket) : Deadline.after(tls.handshakeTimeout).pipe(
        Effect.flatMap((deadline) => Effect.exit(tls.secure(socket, deadline))),
        Effect.flatMap((secured) =>
          Exit.isSuccess(secured)
            ? handler(secured.value)
            : Effect.logDebug("TcpListener.serve: TLS handshake failed", secured.cause)
        )
      )
    // A permit, then a connection in a scope of its own; a failed accept
    // gives both back before the pause, so a waiting permit is not held.
    const acceptOne = Effect.gen(function*() {
      if (permits !== undefined) yield* Semaphore.take(permits, 1)
      const connection = yield* ScopeModule.fork(serverScope)
      const accepted = yield* Effect.exit(ScopeModule.provide(source.accept(options), connection))
      if (Exit.isSuccess(accepted)) return { socket: accepted.value, connection }
      yield* ScopeModule.close(connection, accepted)
      yield* release
      return yield* Effect.failCause(accepted.cause)
    }).pipe(
      Effect.tapError((error) =>
        canPass(error) ? Effect.logWarning("TcpListener.serve: accept failed, retrying", error.message) : Effect.void
      ),
      Effect.retry({ schedule: acceptBackoff, while: canPass })
    )
    while (true) {
      const accepted = yield* Effect.exit(acceptOne)
      if (Exit.isFailure(accepted)) {
        const error = Cause.findErrorOption(accepted.cause)
        if (Option.isNone(error)) return
        // The listener closed: the handlers already running finish first. If
        // serve is interrupted meanwhile, closing its scope interrupts them.
        if (error.value._tag === "Closed") return yield* handlers.drained
        // Every other error than these two was retried.
        if (error.value._tag === "InvalidArgument") return yield* error.value
        return
      }
      const { connection, socket } = accepted.value
      handlers.started()
      yield* ScopeModule.provide(handle(socket), connection).pipe(
        Effect.onExit((exit) => Effect.andThen(ScopeModule.close(connection, exit), release)),
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logWarning("TcpListener.serve: handler failed", cause)
        ),
        Effect.ensuring(handlers.ended),
        Effect.forkIn(serverScope)
      )
    }
  })

/** How many of serve's handlers are running, and a wait until none is. */
class Handlers {
  private running = 0
  private onDrained: (() => void) | undefined

  started(): void {
    this.running += 1
  }

  readonly ended: Effect.Effect<void> = Effect.sync(() => {
    this.running -= 1
    if (this.running === 0) this.onDrained?.()
  })

  readonly drained: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (this.running === 0) return resume(Effect.void)
    this.onDrained = () => resume(Effect.void)
    return Effect.sync(() => {
      this.onDrained = undefined
    })
  })
}
