import { Duration, Effect, Exit, Inspectable, Result } from "effect"
import type { Fiber } from "effect"
import type { Deadline } from "../../Deadline.ts"
import * as TcpError from "../../TcpError.ts"
import { gather } from "../bytes.ts"
import type { Pool, SlotMemory } from "../pool.ts"
import { awaitEvent, type Resume, startTimer } from "../wait.ts"
import { type Failure, type Host, reported } from "./failure.ts"
import { recvBuffered, recvPrefixed, recvUntil } from "./frames.ts"
import { Inbound } from "./inbound.ts"
import { Outbound } from "./outbound.ts"
import type { Transport, TransportEvents } from "./transport.ts"

/** Errors to fail a connection's next calls with, by kind of call; `undefined` when none waits. */
export interface Injector {
  recv(): TcpError.RecvError | undefined
  recvUntil(): TcpError.RecvUntilError | undefined
  send(): TcpError.SendError | undefined
  done(): TcpError.SendError | undefined
  close(): TcpError.CloseError | undefined
}

/** What a connection's release reports (to `TcpMetrics`, when on). */
type Figures = { readonly bytesSent: number; readonly bytesReceived: number }

/** What a connection hands to the one that takes its transport over (an upgrade to TLS). */
export interface Handover<T extends Transport> {
  readonly transport: T
  /** The bytes that had arrived and were not read: the new connection's first. */
  readonly leftover: Uint8Array
  /** Builds the connection taking over, on `makeTransport`'s transport: see `Connection.handOver`. */
  readonly takeOver: <U extends Transport>(makeTransport: (events: TransportEvents) => U) => Connection<U>
}

/**
 * The rules of one TCP connection, written once over any `Transport`
 * (libdill's `tcp.c` over `fd.c`): an inbound and an outbound direction,
 * each with its state and a lane that runs one operation at a time in call
 * order (`inbound.ts`, `outbound.ts`); the failure both directions meet;
 * half-close, graceful close, linger and abort; the slot released exactly
 * once.
 */
export class Connection<T extends Transport = Transport> extends Inspectable.Class
  implements TransportEvents, Host
{
  readonly transport: T
  /** `host:port` of the peer, for error messages, where known. */
  address: string | undefined
  private readonly slot: SlotMemory
  private readonly inbound: Inbound
  private readonly outbound: Outbound
  /** What broke the connection, once something did. */
  failure: Failure | undefined
  private phase: "open" | "closing" | "closed" = "open"
  /** How the connection ended: gracefully (the peer's FIN came in time) or aborted. */
  private fate: "closed" | "aborted" | undefined
  /** Errors a test wants the next calls to fail with (`TcpTest`'s `failNext`), checked before anything moves. */
  inject: Injector | undefined
  private transportClosed = false
  private released = false
  /** Gives the slot back, once the transport let go of the connection and its memory. */
  releaseSlot: () => void
  /** Reports the byte counts when the connection is released (set when metrics are on). */
  reportFigures: ((figures: Figures) => void) | undefined
  private readonly closeWaiters: Array<() => void> = []
  private finWaiter: Resume<void, TcpError.CloseError> | undefined
  /** Ends a graceful close in the background (`linger`) once the transport closed. */
  private stopLingering: (() => void) | undefined

  constructor(
    slot: SlotMemory,
    address: string | undefined,
    releaseSlot: () => void,
    makeTransport: (events: TransportEvents) => T
  ) {
    super()
    this.slot = slot
    this.address = address
    this.releaseSlot = releaseSlot
    this.inbound = new Inbound(this, slot.buffer, () => {
      if (!this.transportClosed) this.transport.resumeReading()
    })
    this.transport = makeTransport(this)
    this.outbound = new Outbound(this, this.transport)
  }

  get open(): boolean {
    return this.phase === "open"
  }

  /**
   * Whether a connection pool may hand this connection to its next user:
   * open both ways, nothing unread, no receive or send left halfway, nothing
   * failed, the peer not finished.
   */
  get reusable(): boolean {
    return this.phase === "open" && this.failure === undefined && !this.transportClosed &&
      this.outbound.state === "open" && this.inbound.clean
  }

  get bytesSent(): number {
    return this.outbound.bytesSent
  }

  get bytesReceived(): number {
    return this.inbound.bytesReceived
  }

  /** What the application did with this end: open, half-closed, closing, or how it ended. */
  get state(): "open" | "done" | "closing" | "closed" | "aborted" {
    if (this.phase === "closed") return this.fate ?? "aborted"
    if (this.phase === "closing") return "closing"
    return this.outbound.state === "done" ? "done" : "open"
  }

  /**
   * What printing the connection (or its socket) shows: addresses, state
   * and sizes. Never the slot's bytes, which may be another connection's
   * (slots are reused without clearing), nor the transport.
   */
  summary() {
    return {
      remoteAddress: this.address,
      localAddress: this.transport.localAddress,
      state: this.phase !== "open" ? this.phase : this.outbound.state,
      peerFinished: this.inbound.eof,
      unread: this.inbound.ring.count,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      slot: { id: this.slot.id, bufferSize: this.inbound.ring.size }
    }
  }

  toJSON() {
    return { _id: "Connection", ...this.summary() }
  }

  // ------------------------------------------------------- transport events

  get region(): Uint8Array {
    return this.inbound.ring.region
  }

  get unread(): number {
    return this.inbound.ring.count
  }

  received(n: number): boolean {
    return this.inbound.received(n)
  }

  writable(error?: Error | null): void {
    this.outbound.writable(error)
  }

  ended(): void {
    this.inbound.ended()
    this.wakeFin(Effect.void)
  }

  failed(cause: Error): void {
    const syscall = Reflect.get(cause, "syscall")
    const outbound = syscall === "write" || syscall === "writev" || syscall === "shutdown"
    const failure = TcpError.fromUnknown(cause, outbound ? "send" : "recv", this.address)
    this.failure ??= failure
    this.inbound.wake()
    this.outbound.failWaiting(() => reported(failure, "send", TcpError.sendTags))
    this.wakeFin(Effect.fail(reported(failure, "close", TcpError.closeTags)))
  }

  closed(): void {
    this.transportClosed = true
    // The transport closed without an EOF or an error to report: nothing
    // more will arrive, which receives see as the end of the stream.
    if (this.failure === undefined) this.inbound.eof = true
    this.inbound.wake()
    this.wakeFin(Effect.void)
    this.releaseIfDone()
    for (const wake of this.closeWaiters.splice(0)) wake()
  }

  // ------------------------------------------------------------------ calls

  /**
   * Fills `targets` (of `total` bytes), waiting until `deadline` (see
   * `Inbound.recv`). Call it while the effect runs.
   */
  recv(targets: ReadonlyArray<Uint8Array>, total: number, deadline: Deadline): Effect.Effect<void, TcpError.RecvError> {
    const injected = this.inject?.recv()
    return injected !== undefined ? Effect.fail(injected) : this.inbound.recv(targets, total, deadline)
  }

  /** What has arrived, up to `max` bytes, waiting until `deadline` for at least one. Call it while the effect runs. */
  recvSome(max: number, deadline: Deadline): Effect.Effect<Uint8Array, TcpError.RecvError> {
    const injected = this.inject?.recv()
    return injected !== undefined ? Effect.fail(injected) : this.inbound.recvSome(max, deadline)
  }

  /** The bytes before the next `delimiter` (see `Inbound.recvUntil`). Call it while the effect runs. */
  recvUntil(delimiter: Uint8Array, max: number, deadline: Deadline): Effect.Effect<Uint8Array, TcpError.RecvUntilError> {
    const injected = this.inject?.recvUntil()
    return injected !== undefined ? Effect.fail(injected) : recvUntil(this.inbound, delimiter, max, deadline)
  }

  /**
   * The frames buffered whole, up to `limit`, if no receive is under way
   * (see `frames.recvBuffered`); never with a test's injected errors
   * pending, which only a receive that may fail can take.
   */
  recvBuffered(delimiter: Uint8Array, max: number, limit: number, into: Array<Uint8Array>): void {
    if (this.inject === undefined) recvBuffered(this.inbound, delimiter, max, limit, into)
  }

  /**
   * A length-prefixed message (see `Inbound.recvPrefixed`); `recvUntil`'s
   * injected errors apply, as to every message receive. Call it while the
   * effect runs.
   */
  recvPrefixed(
    header: number,
    lengthOf: (header: Uint8Array) => number,
    max: number,
    deadline: Deadline
  ): Effect.Effect<Uint8Array, TcpError.RecvUntilError> {
    const injected = this.inject?.recvUntil()
    return injected !== undefined ? Effect.fail(injected) : recvPrefixed(this.inbound, header, lengthOf, max, deadline)
  }

  /** The slot's size: what a receive may ask for and still be retry-safe. */
  get slotSize(): number {
    return this.inbound.ring.size
  }

  /** Hands `chunks` to the transport within `deadline` (see `Outbound.send`). Call it while the effect runs. */
  send(chunks: ReadonlyArray<Uint8Array>, total: number, deadline: Deadline): Effect.Effect<void, TcpError.SendError> {
    const injected = this.inject?.send()
    return injected !== undefined ? Effect.fail(injected) : this.outbound.send(chunks, total, deadline)
  }

  /** Half-close: FIN after what is queued; receiving goes on. */
  done(deadline: Deadline): Effect.Effect<void, TcpError.SendError> {
    const injected = this.inject?.done()
    return injected !== undefined ? Effect.fail(injected) : this.outbound.done(deadline)
  }

  // -------------------------------------------------------------- lifecycle

  /**
   * Hands the transport, the slot and the unread bytes to a new connection
   * (libdill's `tls_attach_*` over a socket in use). Only between calls: no
   * receive or send under way or stopped halfway, nothing failed, neither
   * end finished. This connection is then closed, without touching what it
   * handed over, and its calls fail `Closed`.
   */
  handOver(syscall: string): Result.Result<Handover<T>, TcpError.CloseError> {
    const address = this.address
    if (this.phase !== "open") return Result.fail(TcpError.closed(syscall, address))
    if (this.failure !== undefined) return Result.fail(reported(this.failure, syscall, TcpError.closeTags))
    if (this.transportClosed || this.inbound.eof) {
      return Result.fail(TcpError.make({ tag: "ConnReset", syscall, address, detail: "the peer finished before the upgrade" }))
    }
    if (!this.inbound.idle || this.outbound.state !== "open" || !this.outbound.idle || !this.transport.flushed) {
      return Result.fail(TcpError.invalid(
        syscall,
        "a connection is upgraded between calls: none under way or stopped halfway, neither side finished",
        address
      ))
    }
    const inSlot = this.inbound.takeAll()
    const beyond = this.transport.release()
    const leftover = beyond === undefined || beyond.length === 0
      ? inSlot
      : gather([inSlot, beyond], inSlot.length + beyond.length)
    this.phase = "closed"
    this.fate = "closed"
    this.transportClosed = true
    this.released = true
    // The connection taking over is the same connection to whoever counts: its slot, its
    // injected errors, and on release its figures with this one's added.
    const { bytesReceived, bytesSent, inject, releaseSlot, reportFigures, slot } = this
    const takeOver = <U extends Transport>(makeTransport: (events: TransportEvents) => U): Connection<U> => {
      const next = new Connection(slot, this.address, releaseSlot, makeTransport)
      next.inject = inject
      if (reportFigures !== undefined) {
        next.reportFigures = (figures) =>
          reportFigures({
            bytesSent: bytesSent + figures.bytesSent,
            bytesReceived: bytesReceived + figures.bytesReceived
          })
      }
      return next
    }
    return Result.succeed({ transport: this.transport, leftover, takeOver })
  }

  private wakeFin(outcome: Effect.Effect<void, TcpError.CloseError>): void {
    const waiter = this.finWaiter
    if (waiter === undefined) return
    this.finWaiter = undefined
    waiter(outcome)
  }

  private releaseIfDone(): void {
    if (this.released || !this.transportClosed || this.phase !== "closed") return
    this.released = true
    this.releaseSlot()
    this.reportFigures?.({ bytesSent: this.bytesSent, bytesReceived: this.bytesReceived })
  }

  /**
   * Fails the receive and the send in progress with `Closed`; those queued
   * behind them then start and fail the same way.
   */
  private failWaiters(): void {
    this.inbound.failWaiting(() => TcpError.closed("recv", this.address))
    this.outbound.failWaiting(() => TcpError.closed("send", this.address))
  }

  /** Closes the transport now (RST if unread data is pending); the slot returns once it let go. */
  private closeNow(): void {
    if (this.phase === "closed") return
    this.phase = "closed"
    this.fate ??= "aborted"
    this.failWaiters()
    this.transport.destroy()
    this.stopLingering?.()
    // The transport may have closed already: then no `closed` is coming to release the slot.
    if (this.transportClosed) this.releaseIfDone()
  }
  /**
   * Immediate close: the transport goes now (RST if unread data is
   * pending) and the slot returns once it let go.
   */
  get abort(): Effect.Effect<void> {
    // Made on first use: most connections close gracefully and never need it.
    return this.aborting ??= Effect.uninterruptible(
      Effect.callback<void>((resume) => {
        this.closeNow()
        if (this.transportClosed) {
          this.releaseIfDone()
          resume(Effect.void)
        } else {
          this.closeWaiters.push(() => resume(Effect.void))
        }
      })
    )
  }
  private aborting: Effect.Effect<void> | undefined

  /**
   * Starts a graceful close: FIN after queued bytes, then discard inbound
   * bytes until the peer's FIN. Returns false when already closing.
   */
  private beginClose(): boolean {
    if (this.phase !== "open") return false
    this.phase = "closing"
    this.failWaiters()
    this.outbound.finish()
    this.inbound.discard()
    return true
  }

  /** Waits for the peer's FIN (or an error) until `deadline`. */
  private awaitPeerFin(deadline: Deadline): Effect.Effect<void, TcpError.CloseError> {
    return Effect.suspend(() => {
      if (this.failure !== undefined) return Effect.fail(reported(this.failure, "close", TcpError.closeTags))
      if (this.inbound.eof || this.transportClosed) return Effect.void
      return awaitEvent<void, TcpError.CloseError, TcpError.TimedOut>(
        deadline,
        () => TcpError.timedOut("close", this.address),
        (resume) => {
          this.finWaiter = resume
          return () => {
            if (this.finWaiter === resume) this.finWaiter = undefined
          }
        }
      )
    })
  }

  /** libdill's `tcp_close`: graceful within `deadline`, aborted either way. */
  close(deadline: Deadline): Effect.Effect<void, TcpError.CloseError> {
    return Effect.suspend(() => {
      const injected = this.inject?.close()
      if (injected !== undefined) return Effect.andThen(this.abort, Effect.fail(injected))
      if (!this.beginClose()) return Effect.fail(TcpError.closed("close", this.address))
      const graceful = Effect.tap(this.awaitPeerFin(deadline), () =>
        Effect.sync(() => {
          this.fate ??= "closed"
        }))
      return Effect.ensuring(graceful, this.abort)
    })
  }

  /**
   * The Scope's finalizer. After success the FIN goes out now and the rest
   * of the graceful close (waiting for the peer's FIN, at most
   * `closeTimeout`, then closing the transport) goes on without the scope;
   * otherwise abort at once.
   */
  finalize(exit: Exit.Exit<unknown, unknown>, closeTimeout: Duration.Duration, pool: Pool): Effect.Effect<void> {
    if (Exit.isFailure(exit)) return this.abort
    return Effect.withFiber((fiber) => {
      if (!this.beginClose()) return Effect.void
      // The slot's owner may hand it to a new socket, which then waits for this close.
      this.slot.closing = true
      this.linger(fiber, Duration.toMillis(closeTimeout), pool.lingering)
      return Effect.void
    })
  }

  /**
   * Waits up to `millis` (on `fiber`'s clock) for the peer's FIN, then
   * closes the transport: a timer, no fiber per closing connection.
   * `lingering` holds the connection meanwhile, so the pool can abort it
   * when it closes.
   */
  private linger(
    fiber: Fiber.Fiber<unknown, unknown>,
    millis: number,
    lingering: Set<{ readonly abort: Effect.Effect<void> }>
  ): void {
    if (this.inbound.eof || this.transportClosed || this.failure !== undefined || millis <= 0) return this.closeNow()
    lingering.add(this)
    const cancelTimer = startTimer(fiber, millis, () => this.closeNow())
    this.finWaiter = () => {
      // The peer's FIN came in time, unless what woke us was an error.
      if (this.failure === undefined) this.fate ??= "closed"
      this.closeNow()
    }
    this.stopLingering = () => {
      cancelTimer()
      this.finWaiter = undefined
      lingering.delete(this)
    }
  }
}

