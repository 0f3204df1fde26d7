/**
 * The `TcpStorage` service as `TcpStorage.layer` builds it. The pool behind
 * it is for the library's clients and listeners (`poolOf`), not part of the
 * service's public shape: a user holding the service can take slots and read
 * figures, never reach into the pool.
 */
import { Effect, Inspectable } from "effect"
import type { Scope } from "effect"
import * as Deadline from "../Deadline.ts"
import type * as TcpError from "../TcpError.ts"
import { type PoolSettings, resolvePool } from "./options.ts"
import { Pool, SlotHandle, type Stats } from "./pool.ts"

/** The service: printed, it shows the pool's settings and figures, never a slot's bytes. */
export class Storage extends Inspectable.Class {
  readonly bufferSize: number
  readonly stats: Effect.Effect<Stats>
  readonly acquire: (
    options?: Deadline.Options
  ) => Effect.Effect<SlotHandle, TcpError.TimedOut | TcpError.OutOfMemory | TcpError.InvalidArgument, Scope.Scope>
  // A private field: not an own key, so neither printing nor spreading the service reaches the pool.
  readonly #pool: Pool
  constructor(pool: Pool) {
    super()
    this.#pool = pool
    this.bufferSize = pool.bufferSize
    this.stats = Effect.sync(() => pool.stats())
    this.acquire = Effect.fn("TcpStorage.acquire")(function*(options?: Deadline.Options) {
      const deadline = yield* Deadline.resolve(options, "acquire")
      // Not acquireRelease: its acquire step is uninterruptible, and waiting
      // for a slot must not be.
      const memory = yield* Effect.uninterruptibleMask((restore) =>
        Effect.tap(
          restore(pool.take(deadline, "acquire")),
          (memory) => Effect.addFinalizer(() => Effect.sync(() => pool.drop(memory)))
        )
      )
      return new SlotHandle(memory, memory.generation)
    })
  }
  toJSON() {
    return this.#pool.toJSON()
  }
  /** The pool behind a service `make` built, else `undefined`. */
  static poolOf(service: unknown): Pool | undefined {
    return service instanceof Storage ? service.#pool : undefined
  }
}

/**
 * A pool with the given settings, alive as long as the current scope; its
 * end aborts the graceful closes still lingering in the background.
 */
export const make = Effect.fnUntraced(function*(options: unknown, defaults: PoolSettings) {
  const { bufferSize, onExhausted, slots } = yield* Effect.fromResult(resolvePool(options, defaults, "TcpStorage.layer"))
  const pool = new Pool(slots, bufferSize, onExhausted)
  yield* Effect.addFinalizer(() =>
    Effect.forEach(pool.lingering, (conn) => conn.abort, { concurrency: "unbounded", discard: true })
  )
  return new Storage(pool)
})

/**
 * The pool behind the `TcpStorage` service in context, for the library's
 * clients and listeners. A service built some other way than
 * `TcpStorage.layer` has none: a defect, since sockets cannot live without one.
 */
export const poolOf = (service: unknown): Effect.Effect<Pool> => {
  const pool = Storage.poolOf(service)
  return pool === undefined
    ? Effect.die(new Error("the TcpStorage service was not built by TcpStorage.layer: it has no pool"))
    : Effect.succeed(pool)
}
