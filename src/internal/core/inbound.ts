import { Effect } from "effect"
import type { Deadline } from "../../Deadline.ts"
import * as TcpError from "../../TcpError.ts"
import { gather } from "../bytes.ts"
import { attempt, Lane, type Resume, type Turn } from "../wait.ts"
import { type Host, reported } from "./failure.ts"
import { Ring } from "./ring.ts"

/** What the inbound direction asks of a receive, whatever kind it is. */
interface Pending extends Turn {
  /** Moves forward over the ring; ends it (resuming its fiber) once it has an outcome. Returns whether it ended. */
  advance(): boolean
  /** Ends it at once: the connection closed, or the stream broke, before it could go on. */
  refuseWith(error: TcpError.Closed | TcpError.ConnReset): void
  /** Whether it stopped halfway (bytes taken, its message not whole): the stream is then at an unknown point. */
  halfway(): boolean
}

/**
 * A receive in the inbound lane. Every kind (exact, up to a delimiter,
 * length-prefixed) takes its turn, waits and ends the same way; the kind
 * says only how it moves over the ring (`step`). `advance` and
 * `refuseWith` are the one place a receive's fiber is resumed.
 */
export abstract class Receive<A, E> implements Pending {
  resume: Resume<A, E> | undefined
  readonly inbound: Inbound
  constructor(inbound: Inbound) {
    this.inbound = inbound
  }
  start(): void {
    this.inbound.begin(this)
  }
  /** Moves forward over the ring: its outcome once there is one. */
  abstract step(): Effect.Effect<A, E> | undefined
  /** Its outcome when the connection closed or the stream broke first. */
  abstract refuse(error: TcpError.Closed | TcpError.ConnReset): Effect.Effect<A, E>
  abstract halfway(): boolean
  advance(): boolean {
    const outcome = this.step()
    if (outcome === undefined) return false
    this.inbound.leave(this)
    this.resume?.(outcome)
    return true
  }
  refuseWith(error: TcpError.Closed | TcpError.ConnReset): void {
    this.inbound.leave(this)
    this.resume?.(this.refuse(error))
  }
}

/** An exact receive: bytes go into `targets` in order until `total` (or, for `some`, whatever has arrived). */
export class Incoming extends Receive<void, TcpError.RecvError> {
  filled = 0
  targets: ReadonlyArray<Uint8Array>
  total: number
  /** Up to the slot's size a read completes at once or consumes nothing. */
  readonly atomic: boolean
  /** Takes whatever has arrived, up to `total` bytes, once there is at least one. */
  readonly some: boolean
  constructor(inbound: Inbound, targets: ReadonlyArray<Uint8Array>, total: number, atomic: boolean, some: boolean) {
    super(inbound)
    this.targets = targets
    this.total = total
    this.atomic = atomic
    this.some = some
  }

  refuse(error: TcpError.Closed | TcpError.ConnReset): Effect.Effect<void, TcpError.RecvError> {
    return Effect.fail(error)
  }

  halfway(): boolean {
    return !this.inbound.eof && this.filled > 0 && this.filled < this.total
  }

  step(): Effect.Effect<void, TcpError.RecvError> | undefined {
    const inbound = this.inbound
    const ring = inbound.ring
    if (this.some && ring.count > 0 && this.targets.length === 0) {
      this.total = Math.min(ring.count, this.total)
      this.targets = [new Uint8Array(this.total)]
    }
    // Copying out may resume reading, and a transport may deliver more at once: take that too.
    for (;;) {
      const available = ring.count
      const wanted = this.total - this.filled
      if (available >= wanted) {
        this.copyOut(wanted)
        return Effect.void
      }
      if (this.atomic || available === 0) break
      this.copyOut(available)
    }
    if (inbound.eof) {
      if (ring.count > 0) this.copyOut(ring.count)
      return Effect.fail(TcpError.peerClosed("recv", gather(this.targets, this.filled), inbound.host.address))
    }
    const failure = inbound.host.failure
    if (failure !== undefined) {
      // A read larger than the slot may have taken bytes already: the stream is then at an unknown point.
      if (this.halfway()) inbound.markBroken()
      return Effect.fail(reported(failure, "recv", TcpError.recvTags))
    }
    return undefined
  }

  /** Copies `n` buffered bytes into the targets. */
  private copyOut(n: number): void {
    this.inbound.take(n, this.targets, this.filled)
    this.filled += n
  }
}

/**
 * A connection's inbound direction: the slot's ring the transport reads
 * into, the lane receives take turns in, and its state (the peer's FIN,
 * broken by a receive that stopped halfway, draining while closing).
 * Receives up to the slot's size are retry-safe: one that times out or is
 * interrupted consumes nothing.
 */
export class Inbound {
  readonly ring: Ring
  readonly host: Host
  /** The peer's FIN arrived (or the transport closed without an error). */
  eof = false
  /** The connection is closing: what arrives is dropped. */
  private discarding = false
  /** A receive stopped halfway: the stream is at an unknown point. */
  private broken = false
  /** Bytes delivered to receives, for metrics. */
  bytesReceived = 0
  /** The receive whose turn it is and that waits for bytes. */
  private reader: Pending | undefined
  /** Receives, one at a time in call order. */
  private readonly lane = new Lane()
  /** Reading resumes: the transport reads again, if it is still there. */
  readonly resumeReading: () => void

  constructor(host: Host, buffer: Uint8Array, resumeReading: () => void) {
    this.host = host
    this.ring = new Ring(buffer)
    this.resumeReading = resumeReading
  }

  // ------------------------------------------------------ from the transport

  /** `n` bytes landed in the ring's region. Returns whether to go on reading. */
  received(n: number): boolean {
    if (!this.discarding) this.ring.received(n)
    this.wake()
    return this.ring.nextRegion()
  }

  /** The peer finished. */
  ended(): void {
    this.eof = true
    this.wake()
  }

  /** Nothing unread, no receive under way, the peer not finished, the stream whole: a next reader starts at a boundary. */
  get clean(): boolean {
    return this.ring.count === 0 && this.reader === undefined && !this.eof && !this.broken && !this.discarding
  }

  /** No receive under way, queued or stopped halfway, and not closing. */
  get idle(): boolean {
    return this.lane.idle && this.reader === undefined && !this.broken && !this.discarding
  }

  /** Every unread byte, consumed: what a connection taking the transport over reads first. */
  takeAll(): Uint8Array {
    const bytes = new Uint8Array(this.ring.count)
    this.ring.copyOut([bytes], 0, bytes.length)
    return bytes
  }

  /** Something the waiting receive may be waiting for happened: it checks again. */
  wake(): void {
    this.reader?.advance()
  }

  // ------------------------------------------------------------ receives

  /**
   * Fills `targets` (of `total` bytes), waiting until `deadline`. With
   * nobody queued and an outcome known already it completes synchronously.
   * Call it while the effect runs.
   */
  recv(targets: ReadonlyArray<Uint8Array>, total: number, deadline: Deadline): Effect.Effect<void, TcpError.RecvError> {
    return this.exact(new Incoming(this, targets, total, total <= this.ring.size, false), total, deadline)
  }

  /** What has arrived, up to `max` bytes, waiting until `deadline` for at least one. */
  recvSome(max: number, deadline: Deadline): Effect.Effect<Uint8Array, TcpError.RecvError> {
    const read = new Incoming(this, [], max, true, true)
    return Effect.map(this.exact(read, 1, deadline), () => read.targets[0] ?? new Uint8Array(0))
  }

  /**
   * An exact receive: `needed` buffered bytes (or a known failure) with
   * nobody ahead finish it synchronously, with no wait to set up; otherwise
   * it runs in the lane. An exact receive that can finish at once takes
   * bytes only all together, so it never needs a turn for that.
   */
  private exact(read: Incoming, needed: number, deadline: Deadline): Effect.Effect<void, TcpError.RecvError> {
    if (this.lane.idle && this.outcomeKnown(needed)) {
      const refusal = this.refusal()
      const outcome = refusal === undefined ? read.step() : read.refuse(refusal)
      if (outcome !== undefined) return outcome
    }
    return this.run(read, deadline)
  }

  /** Whether a read needing `needed` bytes can finish (or fail) without waiting. */
  private outcomeKnown(needed: number): boolean {
    return this.ring.count >= needed || this.eof || this.host.failure !== undefined || !this.host.open ||
      this.broken
  }

  /**
   * Runs `receive` in its turn, waiting until `deadline`: it enters the
   * lane and registers how it is abandoned in one step (`attempt`).
   */
  run<A, E>(receive: Receive<A, E>, deadline: Deadline): Effect.Effect<A, E | TcpError.TimedOut> {
    const timedOut = () => TcpError.timedOut("recv", this.host.address)
    return attempt<A, E, TcpError.TimedOut>(deadline, timedOut, (resume) => {
      receive.resume = resume
      this.lane.enter(receive)
      return () => this.abandon(receive)
    })
  }

  /** Why no receive can start now, if none can. */
  private refusal(): TcpError.Closed | TcpError.ConnReset | undefined {
    if (!this.host.open) return TcpError.closed("recv", this.host.address)
    if (this.broken) {
      return TcpError.make(TcpError.ConnReset, "ECONNRESET", "recv", this.host.address, "an earlier receive stopped halfway")
    }
    return undefined
  }

  /** `receive`'s turn has come: it completes now or waits for bytes as the reader. */
  begin(receive: Pending): void {
    const refusal = this.refusal()
    if (refusal !== undefined) return receive.refuseWith(refusal)
    if (!receive.advance()) this.reader = receive
  }

  /** `receive` ended: its turn is over and the next receive's begins. */
  leave(receive: Pending): void {
    if (this.reader === receive) this.reader = undefined
    this.lane.leave(receive)
  }

  /** A receive that timed out or was interrupted: it leaves its turn (or the queue), consuming nothing more. */
  private abandon(receive: Pending): void {
    if (this.reader === receive) this.reader = undefined
    if (receive.halfway()) this.broken = true
    this.lane.leave(receive)
  }

  /** A receive stopped halfway on a failure: the stream is at an unknown point. */
  markBroken(): void {
    this.broken = true
  }

  /** Consumes the ring's first `n` bytes into `targets` from byte `skip` on. */
  take(n: number, targets: ReadonlyArray<Uint8Array>, skip: number): void {
    if (this.ring.copyOut(targets, skip, n)) this.resumeReading()
    this.bytesReceived += n
  }

  /** Drops the ring's first `n` bytes (a delimiter). */
  skip(n: number): void {
    if (this.ring.consume(n)) this.resumeReading()
    this.bytesReceived += n
  }

  // ------------------------------------------------------------- closing

  /** Fails the receive in progress with `error()`; those queued behind it then start and fail the same way. */
  failWaiting(error: () => TcpError.Closed): void {
    this.reader?.refuseWith(error())
  }

  /** A closing connection drains its peer: what is buffered, and what arrives from now on, is dropped. */
  discard(): void {
    this.discarding = true
    if (this.ring.consume(this.ring.count)) this.resumeReading()
  }
}
