/**
 * `TcpClient.pool`: connections to one peer kept open between uses, on
 * effect's `Pool`. The pool's items are holders, not sockets: a holder may
 * be empty (its connection was discarded, or never made), so a dead or
 * unclean connection is replaced inside its holder without the pool having
 * to acquire, invalidate or wait for anything.
 */
import { Duration, Effect, Exit, Metric, Option, Pool, Scope } from "effect"
import type { Context } from "effect"
import * as Deadline from "../Deadline.ts"
import * as TcpError from "../TcpError.ts"
import * as TcpMetrics from "../TcpMetrics.ts"
import type { TcpSocket } from "../TcpSocket.ts"
import { describe, type TcpAddress } from "./address.ts"
import { checkedDuration } from "./options.ts"
import { connectionOf } from "./tcpSocket.ts"
import { bounded } from "./wait.ts"

// The public types (`TcpClient.PoolOptions`, `ConnectionPool`, `PoolStats`)
// live in TcpClient.ts, which imports this module: they are matched here by
// shape, so the two modules do not import each other.

/** The pool's settings; the rest are the options every connection is made with. */
interface Settings {
  readonly size: number
  readonly idleTimeout?: Duration.Input | undefined
}

/** What `pool.stats` reports (`TcpClient.PoolStats`, which is this type). */
export interface Stats {
  readonly open: number
  readonly idle: number
  readonly inUse: number
  readonly waiting: number
  readonly created: number
  readonly reused: number
  readonly discarded: number
}

/** A pool of connections (`TcpClient.ConnectionPool`). */
interface Lender<E> {
  readonly get: (options?: Deadline.Options) => Effect.Effect<TcpSocket, E | TcpError.ConnectError, Scope.Scope>
  readonly stats: Effect.Effect<Stats>
}

/** One place in the pool: the connection it holds (if any), in the scope that closes it. */
class Holder {
  socket: TcpSocket | undefined = undefined
  scope: Scope.Closeable | undefined = undefined
  borrowed = false
}

/** What a pool tells `TcpMetrics` when it lends, takes back or discards a connection. */
interface Meter {
  readonly lent: (outcome: "created" | "reused") => void
  readonly discarded: () => void
  /** The pool's connections or waiters changed: the gauges are set from a fresh snapshot (only when metered). */
  readonly changed: () => void
}

const unmetered: Meter = { lent: () => {}, discarded: () => {}, changed: () => {} }

/** The pool's metrics, recorded with the context it was made in (returns happen in a scope's finalizer). */
const meterOf = (peer: string, context: Context.Context<never>, snapshot: () => Stats): Meter => {
  const lends = {
    created: Metric.withAttributes(TcpMetrics.connectionPoolLends, { peer, outcome: "created" }),
    reused: Metric.withAttributes(TcpMetrics.connectionPoolLends, { peer, outcome: "reused" })
  }
  const discarded = Metric.withAttributes(TcpMetrics.connectionPoolDiscarded, { peer })
  const idle = Metric.withAttributes(TcpMetrics.connectionPoolConnections, { peer, state: "idle" })
  const inUse = Metric.withAttributes(TcpMetrics.connectionPoolConnections, { peer, state: "inUse" })
  const waiting = Metric.withAttributes(TcpMetrics.connectionPoolConnections, { peer, state: "waiting" })
  return {
    lent: (outcome) => lends[outcome].updateUnsafe(1, context),
    discarded: () => discarded.updateUnsafe(1, context),
    changed: () => {
      const stats = snapshot()
      idle.updateUnsafe(stats.idle, context)
      inUse.updateUnsafe(stats.inUse, context)
      waiting.updateUnsafe(stats.waiting, context)
    }
  }
}

/** Whether a socket can serve its next user: only the library's own connections can say so. */
const reusable = (socket: TcpSocket): boolean => connectionOf(socket)?.reusable ?? false

export const make = <Options extends Settings, E>(
  connect: (
    address: TcpAddress,
    options: Omit<Options, "size" | "idleTimeout"> & Deadline.Options
  ) => Effect.Effect<TcpSocket, E, Scope.Scope>,
  address: TcpAddress,
  options: Options
): Effect.Effect<Lender<E>, TcpError.InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    const label = describe(address)
    const { idleTimeout, size, ...connectOptions } = options
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 1) {
      return yield* Effect.fail(TcpError.invalid("connect", `pool size must be a positive integer, got ${String(size)}`, label))
    }
    let timeToLive: Duration.Duration | undefined
    if (idleTimeout !== undefined) {
      const checked = checkedDuration(idleTimeout)
      if (Option.isNone(checked) || Duration.isZero(checked.value)) {
        return yield* Effect.fail(TcpError.invalid("connect", "idleTimeout must be a positive duration", label))
      }
      timeToLive = checked.value
    }

    const holders = new Set<Holder>()
    const counts = { created: 0, reused: 0, discarded: 0, waiting: 0, borrowed: 0 }
    const meter = (yield* Effect.service(TcpMetrics.Enabled))
      ? meterOf(label, yield* Effect.context<never>(), () => snapshot())
      : unmetered

    // Closing the connection's own scope after success closes it gracefully
    // in the background; after a failure it is aborted.
    const close = (holder: Holder, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
      const scope = holder.scope
      holder.socket = undefined
      holder.scope = undefined
      return scope === undefined ? Effect.void : Scope.close(scope, exit)
    }
    const discard = (holder: Holder, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
      counts.discarded++
      meter.discarded()
      return close(holder, exit)
    }

    const acquire = Effect.acquireRelease(
      Effect.sync(() => {
        const holder = new Holder()
        holders.add(holder)
        return holder
      }),
      (holder) => {
        holders.delete(holder)
        return close(holder, Exit.void)
      }
    )
    const pool = timeToLive === undefined
      ? yield* Pool.make({ acquire, size })
      : yield* Pool.makeWithTTL({ acquire, min: 0, max: size, timeToLive })

    const giveBack = (holder: Holder, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
      holder.borrowed = false
      counts.borrowed--
      const socket = holder.socket
      const kept = socket === undefined || (Exit.isSuccess(exit) && reusable(socket))
      if (kept) {
        meter.changed()
        return Effect.void
      }
      return Effect.andThen(discard(holder, exit), Effect.sync(meter.changed))
    }

    // A free place is taken at once whatever the deadline; only a wait for one is bounded.
    const take = (deadline: Deadline.Deadline): Effect.Effect<Holder, TcpError.TimedOut, Scope.Scope> => {
      if (counts.borrowed < size) return Pool.get(pool)
      const waitForOne = Effect.suspend(() => {
        counts.waiting++
        meter.changed()
        return Pool.get(pool)
      }).pipe(Effect.ensuring(Effect.sync(() => {
        counts.waiting--
        meter.changed()
      })))
      return bounded(waitForOne, deadline, () => TcpError.timedOut("connect", label))
    }

    const borrow = (deadline: Deadline.Deadline) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.tap(restore(take(deadline)), (holder) => {
          holder.borrowed = true
          counts.borrowed++
          // Added after `Pool.get`'s own finalizer, so it runs first: the
          // holder is settled before the pool can lend it again.
          return Effect.addFinalizer((exit) => giveBack(holder, exit))
        })
      )

    const get = (getOptions?: Deadline.Options): Effect.Effect<TcpSocket, E | TcpError.ConnectError, Scope.Scope> =>
      Effect.gen(function*() {
        const deadline = yield* Deadline.resolve(getOptions, "connect", label)
        const holder = yield* borrow(deadline)
        const idle = holder.socket
        if (idle !== undefined) {
          if (reusable(idle)) {
            counts.reused++
            meter.lent("reused")
            meter.changed()
            return idle
          }
          // The peer closed or reset it while it sat idle: never handed out.
          yield* discard(holder, Exit.void)
        }
        const scope = yield* Scope.make()
        const socket = yield* connect(address, { ...connectOptions, deadline }).pipe(
          Scope.provide(scope),
          Effect.onExit((exit) => Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void)
        )
        holder.socket = socket
        holder.scope = scope
        counts.created++
        meter.lent("created")
        meter.changed()
        return socket
      })

    const snapshot = (): Stats => {
      let idle = 0
      let inUse = 0
      for (const holder of holders) {
        if (holder.socket === undefined) continue
        if (holder.borrowed) inUse++
        else idle++
      }
      return {
        open: idle + inUse,
        idle,
        inUse,
        waiting: counts.waiting,
        created: counts.created,
        reused: counts.reused,
        discarded: counts.discarded
      }
    }

    return { get, stats: Effect.sync(snapshot) }
  })
