import { Duration, Effect, Exit, Inspectable } from "effect"
import type { Fiber } from "effect"
import type { Deadline } from "../../Deadline.ts"
import * as TcpError from "../../TcpError.ts"
import { gather } from "../bytes.ts"
import type { Pool, SlotMemory } from "../pool.ts"
import { attempt, awaitEvent, Lane, type Resume, startTimer, type Turn } from "../wait.ts"
import { Ring } from "./ring.ts"
import type { Transport, TransportEvents } from "./transport.ts"

type Failure = Exclude<TcpError.TcpError, TcpError.PeerClosed>

/** Errors to fail a connection's next calls with, by kind of call; `undefined` when none waits. */
export interface Injector {
  recv(): TcpError.RecvError | undefined
  send(): TcpError.SendError | undefined
  done(): TcpError.SendError | undefined
  close(): TcpError.CloseError | undefined
}

/** A receive in the inbound lane: bytes go into `targets` in order until `total`. */
class Incoming implements Turn {
  filled = 0
  resume: Resume<void, TcpError.RecvError> | undefined
  private readonly connection: Connection
  targets: ReadonlyArray<Uint8Array>
  total: number
  /** Up to the slot's size a read completes at once or consumes nothing. */
  readonly atomic: boolean
  /** Takes whatever has arrived, up to `total` bytes, once there is at least one. */
  readonly some: boolean
  constructor(connection: Connection, targets: ReadonlyArray<Uint8Array>, total: number, atomic: boolean, some: boolean) {
    this.connection = connection
    this.targets = targets
    this.total = total
    this.atomic = atomic
    this.some = some
  }
  start(): void {
    this.connection.startRead(this)
  }
}

/**
 * A send (or, with no chunks, the FIN of `done`) in the outbound lane: its
 * bytes, how far the transport took them, and the waiting fiber's resume.
 */
class Outgoing implements Turn {
  offset = 0
  private readonly connection: Connection
  readonly chunks: ReadonlyArray<Uint8Array>
  readonly total: number
  readonly syscall: "send" | "done"
  readonly resume: Resume<void, TcpError.SendError>
  constructor(
    connection: Connection,
    chunks: ReadonlyArray<Uint8Array>,
    total: number,
    syscall: "send" | "done",
    resume: Resume<void, TcpError.SendError>
  ) {
    this.connection = connection
    this.chunks = chunks
    this.total = total
    this.syscall = syscall
    this.resume = resume
  }
  start(): void {
    this.connection.startSend(this)
  }
}

/**
 * The rules of one TCP connection, written once over any `Transport`
 * (libdill's `tcp.c` over `fd.c`): per direction a lane that runs one
 * operation at a time in call order and a state (open, done, broken,
 * failed); retry-safe receives from the slot's ring; deadlines; half-close,
 * graceful close, linger and abort; the slot released exactly once.
 *
 * Each direction resumes its waiting fiber in one place (`endRead`,
 * `endSend`). An operation takes its turn and moves its first byte in the
 * same step as its wait begins (`attempt`), so nothing comes between a
 * check and an action, wherever the runtime yields.
 */
export class Connection<T extends Transport = Transport> extends Inspectable.Class implements TransportEvents {
  readonly transport: T
  /** `host:port` of the peer, for error messages, where known. */
  address: string | undefined
  /** Receives, one at a time in call order. */
  private readonly inbound = new Lane()
  /** Sends and the FIN, one at a time in call order. */
  private readonly outboundLane = new Lane()

  private readonly slot: SlotMemory
  private readonly ring: Ring
  private eof = false
  private discarding = false
  private failure: Failure | undefined
  /** The receive whose turn it is and that waits for bytes. */
  private reader: Incoming | undefined
  private inboundBroken = false

  private outbound: "open" | "done" | "broken" = "open"
  /** The send (or FIN) whose turn it is and that waits for the transport, until it completes or is abandoned. */
  private sending: Outgoing | undefined

  private phase: "open" | "closing" | "closed" = "open"
  /** How the connection ended: gracefully (the peer's FIN came in time) or aborted. */
  private fate: "closed" | "aborted" | undefined
  /** Errors a test wants the next calls to fail with (`TcpTest`'s `failNext`), checked before anything moves. */
  inject: Injector | undefined
  private transportClosed = false
  private released = false
  /** Called once the transport let go of the connection and its slot. */
  releaseSlot: () => void
  /** Bytes handed to the transport and delivered to receives, for metrics. */
  bytesSent = 0
  bytesReceived = 0
  /** Reports the byte counts when the connection is released (set when metrics are on). */
  reportFigures: ((figures: { readonly bytesSent: number; readonly bytesReceived: number }) => void) | undefined
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
    this.ring = new Ring(slot.buffer)
    this.address = address
    this.releaseSlot = releaseSlot
    this.transport = makeTransport(this)
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
      state: this.phase !== "open" ? this.phase : this.outbound,
      peerFinished: this.eof,
      unread: this.ring.count,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      slot: { id: this.slot.id, bufferSize: this.ring.size }
    }
  }

  toJSON() {
    return { _id: "Connection", ...this.summary() }
  }

  // ------------------------------------------------------- transport events

  get region(): Uint8Array {
    return this.ring.region
  }

  get unread(): number {
    return this.ring.count
  }

  /** What the application did with this end: open, half-closed, closing, or how it ended. */
  get state(): "open" | "done" | "closing" | "closed" | "aborted" {
    if (this.phase === "closed") return this.fate ?? "aborted"
    if (this.phase === "closing") return "closing"
    return this.outbound === "done" ? "done" : "open"
  }

  received(n: number): boolean {
    // A closing connection drains its peer: what arrives then is dropped.
    if (!this.discarding) this.ring.received(n)
    if (this.reader !== undefined) this.serve(this.reader)
    return this.ring.nextRegion()
  }

  ended(): void {
    this.eof = true
    if (this.reader !== undefined) this.serve(this.reader)
    this.wakeFin(Effect.void)
  }

  failed(cause: Error): void {
    const syscall = Reflect.get(cause, "syscall")
    const outbound = syscall === "write" || syscall === "writev" || syscall === "shutdown"
    const failure = TcpError.fromUnknown(cause, outbound ? "send" : "recv", this.address)
    this.failure ??= failure
    if (this.reader !== undefined) this.serve(this.reader)
    if (this.sending !== undefined) this.endSend(this.sending, reported(failure, "send", TcpError.sendTags))
    this.wakeFin(Effect.fail(reported(failure, "close", TcpError.closeTags)))
  }

  closed(): void {
    this.transportClosed = true
    // The transport closed without an EOF or an error to report: nothing
    // more will arrive, which receives see as the end of the stream.
    if (this.failure === undefined) this.eof = true
    if (this.reader !== undefined) this.serve(this.reader)
    this.wakeFin(Effect.void)
    this.releaseIfDone()
    for (const wake of this.closeWaiters.splice(0)) wake()
  }

  /** What was written is through (or failed): the waiting send goes on with its next bytes, or learns its outcome. */
  readonly writable = (error?: Error | null): void => {
    const outgoing = this.sending
    if (outgoing === undefined) return
    if (error !== undefined && error !== null) return this.endSend(outgoing, this.sendFailure(error))
    if (!this.transport.flushed) return
    if (outgoing.syscall === "done") return this.endSend(outgoing, undefined)
    const outcome = this.push(outgoing)
    if (outcome !== "waiting") this.endSend(outgoing, outcome)
  }

  // ---------------------------------------------------------------- inbound

  private consume(n: number, targets?: ReadonlyArray<Uint8Array>, skip = 0): void {
    const resume = targets === undefined ? this.ring.consume(n) : this.ring.copyOut(targets, skip, n)
    if (resume && !this.transportClosed) this.transport.resumeReading()
  }

  /** Copies `n` buffered bytes into the read's targets. */
  private copyOut(read: Incoming, n: number): void {
    this.consume(n, read.targets, read.filled)
    read.filled += n
    this.bytesReceived += n
  }

  /** Moves a read forward; returns its outcome once it has one. */
  private step(read: Incoming): Effect.Effect<void, TcpError.RecvError> | undefined {
    if (read.some && this.ring.count > 0 && read.targets.length === 0) {
      read.total = Math.min(this.ring.count, read.total)
      read.targets = [new Uint8Array(read.total)]
    }
    // Copying out may resume reading, and a transport may deliver more at once: take that too.
    for (;;) {
      const available = this.ring.count
      const wanted = read.total - read.filled
      if (available >= wanted) {
        this.copyOut(read, wanted)
        return Effect.void
      }
      if (read.atomic || available === 0) break
      this.copyOut(read, available)
    }
    if (this.eof) {
      if (this.ring.count > 0) this.copyOut(read, this.ring.count)
      return Effect.fail(TcpError.peerClosed("recv", gather(read.targets, read.filled), this.address))
    }
    if (this.failure !== undefined) {
      // A read larger than the slot may have taken bytes already: the stream is then at an unknown point.
      this.markIfHalfway(read)
      return Effect.fail(reported(this.failure, "recv", TcpError.recvTags))
    }
    return undefined
  }

  /** Moves the waiting read on after bytes, the peer's FIN or an error arrived. */
  private serve(read: Incoming): void {
    const outcome = this.step(read)
    if (outcome !== undefined) this.endRead(read, outcome)
  }

  /**
   * Fills `targets` (of `total` bytes) from the connection, waiting until
   * `deadline`. With nobody queued and an outcome known already it
   * completes synchronously. Call it while the effect runs (inside
   * `Effect.suspend` or an `Effect.fn` body).
   */
  recv(targets: ReadonlyArray<Uint8Array>, total: number, deadline: Deadline): Effect.Effect<void, TcpError.RecvError> {
    const injected = this.inject?.recv()
    if (injected !== undefined) return Effect.fail(injected)
    return this.runReceive(new Incoming(this, targets, total, total <= this.ring.size, false), total, deadline)
  }

  /**
   * What has arrived, up to `max` bytes, waiting until `deadline` for at
   * least one; `PeerClosed` (with no bytes) once the peer finished. Call it
   * while the effect runs.
   */
  recvSome(max: number, deadline: Deadline): Effect.Effect<Uint8Array, TcpError.RecvError> {
    const injected = this.inject?.recv()
    if (injected !== undefined) return Effect.fail(injected)
    const read = new Incoming(this, [], max, true, true)
    return Effect.map(this.runReceive(read, 1, deadline), () => read.targets[0] ?? new Uint8Array(0))
  }

  private readonly recvTimedOut = () => TcpError.timedOut("recv", this.address)
  private readonly sendTimedOut = () => TcpError.timedOut("send", this.address)
  private readonly doneTimedOut = () => TcpError.timedOut("done", this.address)

  /**
   * Runs `read` in its turn. `needed` buffered bytes (or a known failure)
   * with nobody ahead finish it synchronously, with no wait to set up;
   * otherwise it enters the lane and waits, all in one step (`attempt`).
   */
  private runReceive(read: Incoming, needed: number, deadline: Deadline): Effect.Effect<void, TcpError.RecvError> {
    if (this.inbound.idle && this.outcomeKnown(needed)) {
      const outcome = this.beginRead(read)
      if (outcome !== undefined) return outcome
    }
    return attempt<void, TcpError.RecvError, TcpError.TimedOut>(deadline, this.recvTimedOut, (resume) => {
      read.resume = resume
      this.inbound.enter(read)
      return () => this.abandonRead(read)
    })
  }

  /** Whether a read needing `needed` bytes can finish (or fail) without waiting. */
  private outcomeKnown(needed: number): boolean {
    return this.ring.count >= needed || this.eof || this.failure !== undefined || this.phase !== "open" ||
      this.inboundBroken
  }

  /** `read`'s turn has come: it completes now or waits for bytes as the reader. */
  startRead(read: Incoming): void {
    const outcome = this.beginRead(read)
    if (outcome === undefined) this.reader = read
    else this.endRead(read, outcome)
  }

  /** The one place a receive's fiber is resumed: its turn ends and the next receive's begins. */
  private endRead(read: Incoming, outcome: Effect.Effect<void, TcpError.RecvError>): void {
    if (this.reader === read) this.reader = undefined
    this.inbound.leave(read)
    read.resume?.(outcome)
  }

  /** A read that timed out or was interrupted: it leaves its turn (or the queue), consuming nothing more. */
  private abandonRead(read: Incoming): void {
    if (this.reader === read) this.reader = undefined
    this.markIfHalfway(read)
    this.inbound.leave(read)
  }

  /** A read that stopped halfway (not at the peer's FIN) leaves the stream at an unknown point. */
  private markIfHalfway(read: Incoming): void {
    if (!this.eof && read.filled > 0 && read.filled < read.total) this.inboundBroken = true
  }

  /** Starts a read: its outcome when there is one already, else `undefined` (it waits). */
  private beginRead(read: Incoming): Effect.Effect<void, TcpError.RecvError> | undefined {
    if (this.phase !== "open") return Effect.fail(TcpError.closed("recv", this.address))
    if (this.inboundBroken) {
      return Effect.fail(
        TcpError.make(TcpError.ConnReset, "ECONNRESET", "recv", this.address, "an earlier receive stopped halfway")
      )
    }
    return this.step(read)
  }

  // --------------------------------------------------------------- outbound

  /**
   * Hands `chunks` (of `total` bytes) to the transport, waiting until
   * `deadline` for what it could not take at once. The send takes its turn
   * and moves its first byte in the same step as its wait begins, so no
   * other send can come between, whatever the fiber does around the call.
   * The caller may reuse its buffers as soon as the send returns, however
   * it ended: an abandoned send is never read from again.
   */
  send(chunks: ReadonlyArray<Uint8Array>, total: number, deadline: Deadline): Effect.Effect<void, TcpError.SendError> {
    const injected = this.inject?.send()
    if (injected !== undefined) return Effect.fail(injected)
    return attempt<void, TcpError.SendError, TcpError.TimedOut>(deadline, this.sendTimedOut, (resume) => {
      const outgoing = new Outgoing(this, chunks, total, "send", resume)
      this.outboundLane.enter(outgoing)
      return () => this.abandonSend(outgoing)
    })
  }

  /** Half-close: FIN after what is queued; receiving goes on. */
  done(deadline: Deadline): Effect.Effect<void, TcpError.SendError> {
    const injected = this.inject?.done()
    if (injected !== undefined) return Effect.fail(injected)
    return attempt<void, TcpError.SendError, TcpError.TimedOut>(deadline, this.doneTimedOut, (resume) => {
      const fin = new Outgoing(this, [], 0, "done", resume)
      this.outboundLane.enter(fin)
      return () => this.abandonSend(fin)
    })
  }

  /** `outgoing`'s turn has come: it moves what the transport takes now, or waits as the sending one. */
  startSend(outgoing: Outgoing): void {
    const blocked = this.outboundBlocked(outgoing.syscall)
    if (blocked !== undefined) return this.endSend(outgoing, blocked)
    if (outgoing.syscall === "done") {
      this.outbound = "done"
      this.transport.end()
      if (this.transport.flushed) return this.endSend(outgoing, undefined)
      this.sending = outgoing
      return
    }
    if (outgoing.total === 0) return this.endSend(outgoing, undefined)
    this.bytesSent += outgoing.total
    const outcome = this.push(outgoing)
    if (outcome === "waiting") this.sending = outgoing
    else this.endSend(outgoing, outcome)
  }

  /**
   * The one place a send's fiber is resumed: its turn ends and the next
   * send's begins. A send that failed after moving bytes leaves the
   * stream at an unknown point.
   */
  private endSend(outgoing: Outgoing, error: TcpError.SendError | undefined): void {
    if (this.sending === outgoing) this.sending = undefined
    if (error !== undefined && outgoing.offset > 0 && this.outbound === "open") this.outbound = "broken"
    this.outboundLane.leave(outgoing)
    outgoing.resume(error === undefined ? Effect.void : Effect.fail(error))
  }

  /**
   * A send that timed out or was interrupted: one that had begun may have
   * sent part of its bytes, so the outbound direction cannot be trusted
   * again; its bytes are never read again.
   */
  private abandonSend(outgoing: Outgoing): void {
    if (this.sending === outgoing) {
      this.sending = undefined
      if (this.outbound === "open") this.outbound = "broken"
    }
    this.outboundLane.leave(outgoing)
  }

  /** Moves a send on as far as the transport takes it: its outcome, or `"waiting"` for `writable`. */
  private push(outgoing: Outgoing): "waiting" | TcpError.SendError | undefined {
    const reached = this.transport.write(outgoing.chunks, outgoing.offset, outgoing.total)
    if (reached instanceof Error) return this.sendFailure(reached)
    outgoing.offset = reached
    return reached === outgoing.total && this.transport.flushed ? undefined : "waiting"
  }

  private sendFailure(cause: unknown): TcpError.SendError {
    return TcpError.narrow(TcpError.fromUnknown(cause, "send", this.address), TcpError.sendTags)
  }

  /** Why the outbound direction cannot take bytes now, if it cannot. */
  private outboundBlocked(syscall: string): TcpError.SendError | undefined {
    if (this.phase !== "open") return TcpError.closed(syscall, this.address)
    if (this.outbound === "done") {
      return TcpError.make(TcpError.BrokenPipe, "EPIPE", syscall, this.address, "sending side already finished")
    }
    if (this.outbound === "broken") {
      return TcpError.make(TcpError.ConnReset, "ECONNRESET", syscall, this.address, "an earlier send stopped halfway")
    }
    if (this.failure !== undefined) return reported(this.failure, syscall, TcpError.sendTags)
    const gone = this.transport.gone
    if (gone === undefined) return undefined
    return gone !== null
      ? this.sendFailure(gone)
      : TcpError.make(TcpError.BrokenPipe, "EPIPE", syscall, this.address, "connection already closed")
  }

  // -------------------------------------------------------------- lifecycle

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
    if (this.reader !== undefined) this.endRead(this.reader, Effect.fail(TcpError.closed("recv", this.address)))
    if (this.sending !== undefined) this.endSend(this.sending, TcpError.closed("send", this.address))
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
  readonly abort: Effect.Effect<void> = Effect.uninterruptible(
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

  /**
   * Starts a graceful close: FIN after queued bytes, then discard inbound
   * bytes until the peer's FIN. Returns false when already closing.
   */
  private beginClose(): boolean {
    if (this.phase !== "open") return false
    this.phase = "closing"
    this.failWaiters()
    if (this.outbound !== "done" && this.transport.gone === undefined) this.transport.end()
    this.outbound = "done"
    this.discarding = true
    this.consume(this.ring.count)
    return true
  }

  /** Waits for the peer's FIN (or an error) until `deadline`. */
  private awaitPeerFin(deadline: Deadline): Effect.Effect<void, TcpError.CloseError> {
    return Effect.suspend(() => {
      if (this.failure !== undefined) return Effect.fail(reported(this.failure, "close", TcpError.closeTags))
      if (this.eof || this.transportClosed) return Effect.void
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
    if (this.eof || this.transportClosed || this.failure !== undefined || millis <= 0) return this.closeNow()
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

/**
 * A connection's failure as the call that meets it reports it: the same
 * errno, that call's syscall, and only the tags that call documents.
 */
const reported = <T extends TcpError.Tag>(
  failure: Failure,
  syscall: string,
  tags: ReadonlySet<T>
): Extract<TcpError.TcpError, { readonly _tag: T }> | TcpError.SystemError =>
  TcpError.narrow(
    failure.syscall === syscall ? failure : TcpError.fromCode(asSeenBy(failure.errno, tags), syscall, failure.address),
    tags
  )

/**
 * EPIPE is how a write learns the peer is gone; a call that does not report
 * BrokenPipe (recv, close) sees the same fact as a reset connection, as
 * libdill's tcp_close does.
 */
const asSeenBy = (errno: string, tags: ReadonlySet<TcpError.Tag>): string =>
  errno === "EPIPE" && !tags.has("BrokenPipe") ? "ECONNRESET" : errno
