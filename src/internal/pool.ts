import { Effect, Exit, Inspectable } from "effect"
import type { Deadline } from "../Deadline.ts"
import * as TcpError from "../TcpError.ts"
import { attempt, awaitEvent } from "./wait.ts"

/**
 * One slot's memory: the receive buffer a socket reads into for its whole
 * life. `generation` changes each time the slot goes back to the pool, so a
 * stale handle to it can never reach the next owner's socket.
 */
export class SlotMemory extends Inspectable.Class {
  generation = 0
  /** The acquiring scope (if any) and the live socket (if any). */
  holders = 0
  attached = false
  /** The socket in this slot is finishing a graceful close in the background: a caller's connect may wait for it. */
  closing = false
  /** Callers waiting for the socket in this slot to be released. */
  readonly releaseWaiters: Array<() => void> = []
  readonly id: number
  readonly buffer: Buffer
  /** The pool this slot goes back to, whichever pool's socket used it. */
  readonly pool: Pool
  constructor(id: number, buffer: Buffer, pool: Pool) {
    super()
    this.id = id
    this.buffer = buffer
    this.pool = pool
  }
  /** Slots are reused without clearing: printing shows sizes and state, never the buffer. */
  toJSON() {
    return { _id: "TcpStorage.Slot", id: this.id, bufferSize: this.buffer.length, attached: this.attached }
  }
}

/** What `TcpStorage.acquire` hands out: a handle to a slot for one generation. */
export class SlotHandle extends Inspectable.Class {
  readonly memory: SlotMemory
  readonly generation: number
  constructor(memory: SlotMemory, generation: number) {
    super()
    this.memory = memory
    this.generation = generation
  }
  /** Printing shows which slot and whether it is still held, never its bytes. */
  toJSON() {
    return { _id: "TcpStorage.Slot", id: this.id, bufferSize: this.bufferSize, live: this.live }
  }
  get id(): number {
    return this.memory.id
  }
  get bufferSize(): number {
    return this.memory.buffer.length
  }
  get live(): boolean {
    return this.memory.generation === this.generation && this.memory.holders > 0
  }
}

interface SlotWaiter {
  slot: SlotMemory | undefined
  wake: () => void
}

export type OnExhausted = "wait" | "fail"

export interface Stats {
  readonly slots: number
  readonly inUse: number
  readonly waiting: number
  readonly highWater: number
}

/** A bounded pool of slots, created on demand up to `size` and then reused. */
export class Pool extends Inspectable.Class {
  private created = 0
  private inUse = 0
  private highWater = 0
  private readonly free: Array<SlotMemory> = []
  private readonly waiters: Array<SlotWaiter> = []

  readonly size: number
  readonly bufferSize: number
  readonly onExhausted: OnExhausted
  /** Connections finishing a graceful close on their own timer; aborted when the pool closes. */
  readonly lingering = new Set<{ readonly abort: Effect.Effect<void> }>()

  constructor(size: number, bufferSize: number, onExhausted: OnExhausted) {
    super()
    this.size = size
    this.bufferSize = bufferSize
    this.onExhausted = onExhausted
  }

  /** Printing shows the settings and figures, never a slot's bytes (slots are reused without clearing). */
  toJSON() {
    return {
      _id: "TcpStorage",
      maxSlots: this.size,
      bufferSize: this.bufferSize,
      onExhausted: this.onExhausted,
      ...this.stats(),
      lingering: this.lingering.size
    }
  }

  stats(): Stats {
    return { slots: this.created, inUse: this.inUse, waiting: this.waiters.length, highWater: this.highWater }
  }

  /** Takes a slot for one holder, waiting within `deadline` if the pool allows it. */
  take(
    deadline: Deadline,
    syscall: string,
    address?: string
  ): Effect.Effect<SlotMemory, TcpError.TimedOut | TcpError.OutOfMemory> {
    return Effect.suspend((): Effect.Effect<SlotMemory, TcpError.TimedOut | TcpError.OutOfMemory> => {
      const slot = this.tryTake(syscall, address)
      if (slot instanceof TcpError.OutOfMemory) return Effect.fail(slot)
      if (slot !== undefined) return Effect.succeed(slot)
      if (this.onExhausted === "fail") {
        return Effect.fail(
          TcpError.outOfMemory(syscall, `storage pool exhausted (${this.size} slots)`, address)
        )
      }
      return this.wait(deadline, syscall, address)
    })
  }

  /** A slot for one holder if one is free (or can be made) now, else `undefined`: `take` then waits or fails. */
  takeNow(): SlotMemory | undefined {
    const slot = this.tryTake("")
    return slot instanceof SlotMemory ? slot : undefined
  }

  /** A holder lets go; the last one returns the slot to the pool. */
  drop(slot: SlotMemory): void {
    slot.holders -= 1
    if (slot.holders > 0) return
    slot.generation += 1
    slot.attached = false
    const waiter = this.waiters.shift()
    if (waiter === undefined) {
      this.inUse -= 1
      this.free.push(slot)
      return
    }
    slot.holders = 1
    waiter.slot = slot
    waiter.wake()
  }

  /** A free slot, a new one, `undefined` when all are held, or `OutOfMemory` when a new one cannot be allocated. */
  private tryTake(syscall: string, address?: string): SlotMemory | TcpError.OutOfMemory | undefined {
    let slot = this.free.pop()
    if (slot === undefined) {
      if (this.created >= this.size) return undefined
      let buffer: Buffer
      try {
        buffer = Buffer.allocUnsafeSlow(this.bufferSize)
      } catch {
        // Node throws a RangeError (ERR_MEMORY_ALLOCATION_FAILED) when the memory is not there: the call's error.
        return TcpError.outOfMemory(syscall, `cannot allocate a ${this.bufferSize}-byte storage slot`, address)
      }
      slot = new SlotMemory(this.created, buffer, this)
      this.created += 1
    }
    slot.holders = 1
    this.inUse += 1
    if (this.inUse > this.highWater) this.highWater = this.inUse
    return slot
  }

  private wait(
    deadline: Deadline,
    syscall: string,
    address?: string
  ): Effect.Effect<SlotMemory, TcpError.TimedOut> {
    const waiter: SlotWaiter = { slot: undefined, wake: () => {} }
    const waiting = awaitEvent<SlotMemory, never, TcpError.TimedOut>(
      deadline,
      () => TcpError.timedOut(syscall, address),
      (resume) => {
        waiter.wake = () => {
          if (waiter.slot !== undefined) resume(Effect.succeed(waiter.slot))
        }
        this.waiters.push(waiter)
        return () => {
          const index = this.waiters.indexOf(waiter)
          if (index !== -1) this.waiters.splice(index, 1)
        }
      }
    )
    // A slot handed over while the wait was being abandoned goes back.
    return Effect.uninterruptibleMask((restore) =>
      Effect.onExit(restore(waiting), (exit) => {
        if (Exit.isFailure(exit) && waiter.slot !== undefined) this.drop(waiter.slot)
        return Effect.void
      })
    )
  }
}

/**
 * Takes the slot a new socket will live in: the caller's own (`storage`,
 * which must be a live slot not serving another socket) or one from the pool.
 */
export const claim = (
  pool: Pool,
  storage: unknown,
  deadline: Deadline,
  syscall: string,
  address?: string
): Effect.Effect<SlotMemory, TcpError.TimedOut | TcpError.OutOfMemory | TcpError.InvalidArgument> => {
  if (storage === undefined) {
    return Effect.map(pool.take(deadline, syscall, address), (memory) => {
      memory.attached = true
      return memory
    })
  }
  return claimOwn(storage, deadline, syscall, address)
}

/**
 * `claim` when it needs neither to wait nor to fail: a pool slot that is
 * free (or can be made) now, else `undefined`, and `claim` decides.
 */
export const claimNow = (pool: Pool, storage: unknown): SlotMemory | undefined => {
  if (storage !== undefined) return undefined
  const memory = pool.takeNow()
  if (memory !== undefined) memory.attached = true
  return memory
}

/**
 * Claims the caller's own slot. One whose previous socket is finishing its
 * graceful close in the background is not in use: the claim waits for that
 * close (bounded by `closeTimeout`) within `deadline`, and takes the slot in
 * the same step as it is released, so no other claim comes between.
 */
const claimOwn = (
  storage: unknown,
  deadline: Deadline,
  syscall: string,
  address?: string
): Effect.Effect<SlotMemory, TcpError.TimedOut | TcpError.InvalidArgument> => {
  let claimed: SlotMemory | undefined
  const claiming = attempt<SlotMemory, TcpError.InvalidArgument, TcpError.TimedOut>(
    deadline,
    () => TcpError.timedOut(syscall, address),
    (resume) => {
      const tryClaim = (): void => {
        if (!(storage instanceof SlotHandle) || !storage.live) {
          return resume(Effect.fail(TcpError.invalid(syscall, "storage is not a live TcpStorage slot", address)))
        }
        const memory = storage.memory
        if (memory.attached && memory.closing) {
          memory.releaseWaiters.push(tryClaim)
          return
        }
        if (memory.attached) {
          return resume(Effect.fail(TcpError.invalid(syscall, "storage slot already serves an open socket", address)))
        }
        memory.attached = true
        memory.holders += 1
        claimed = memory
        resume(Effect.succeed(memory))
      }
      tryClaim()
      return () => {
        if (!(storage instanceof SlotHandle)) return
        const index = storage.memory.releaseWaiters.indexOf(tryClaim)
        if (index !== -1) storage.memory.releaseWaiters.splice(index, 1)
      }
    }
  )
  // A slot taken as the wait was being abandoned goes back.
  return Effect.uninterruptibleMask((restore) =>
    Effect.onExit(restore(claiming), (exit) => {
      if (Exit.isFailure(exit) && claimed !== undefined) unclaim(claimed)
      return Effect.void
    })
  )
}

/** The socket living in `memory` is gone: the slot can serve another. */
export const unclaim = (memory: SlotMemory): void => {
  memory.attached = false
  memory.closing = false
  memory.pool.drop(memory)
  // The first waiter takes the slot at once; the others find it attached and wait on.
  for (const wake of memory.releaseWaiters.splice(0)) wake()
}
