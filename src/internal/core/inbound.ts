import { Effect } from "effect"
import type { Deadline } from "../../Deadline.ts"
import * as TcpError from "../../TcpError.ts"
import { gather } from "../bytes.ts"
import { attempt, Lane, type Resume, type Turn } from "../wait.ts"
import { type Host, reported } from "./failure.ts"
import { Ring } from "./ring.ts"

/** A receive in the inbound lane: bytes go into `targets` in order until `total`. */
class Incoming implements Turn {
  filled = 0
  resume: Resume<void, TcpError.RecvError> | undefined
  private readonly inbound: Inbound
  targets: ReadonlyArray<Uint8Array>
  total: number
  /** Up to the slot's size a read completes at once or consumes nothing. */
  readonly atomic: boolean
  /** Takes whatever has arrived, up to `total` bytes, once there is at least one. */
  readonly some: boolean
  constructor(inbound: Inbound, targets: ReadonlyArray<Uint8Array>, total: number, atomic: boolean, some: boolean) {
    this.inbound = inbound
    this.targets = targets
    this.total = total
    this.atomic = atomic
    this.some = some
  }
  start(): void {
    this.inbound.startRead(this)
  }
}

/**
 * A receive up to a delimiter (`recvUntil`), in the inbound lane. A frame
 * longer than the slot moves out of the ring as it arrives (`moved`), all
 * but the bytes a delimiter split across the boundary could start in.
 */
class Frame implements Turn {
  resume: Resume<Uint8Array, TcpError.RecvUntilError> | undefined
  private readonly inbound: Inbound
  readonly delimiter: Uint8Array
  readonly max: number
  readonly moved: Array<Uint8Array> = []
  movedLength = 0
  /** Where the next search in the ring starts: no delimiter starts before it. */
  scanned = 0
  constructor(inbound: Inbound, delimiter: Uint8Array, max: number) {
    this.inbound = inbound
    this.delimiter = delimiter
    this.max = max
  }
  start(): void {
    this.inbound.startFrame(this)
  }
}

/**
 * A length-prefixed message (`TcpMessage.prefix`) in the inbound lane: the
 * header is read in place, so a length past `max` fails with nothing
 * consumed; header and body are then one exact read (`read`), retry-safe
 * when both fit in the slot.
 */
class Prefixed implements Turn {
  resume: Resume<Uint8Array, TcpError.RecvUntilError> | undefined
  private readonly inbound: Inbound
  readonly header: number
  readonly lengthOf: (header: Uint8Array) => number
  readonly max: number
  read: Incoming | undefined
  constructor(inbound: Inbound, header: number, lengthOf: (header: Uint8Array) => number, max: number) {
    this.inbound = inbound
    this.header = header
    this.lengthOf = lengthOf
    this.max = max
  }
  start(): void {
    this.inbound.startPrefixed(this)
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
  /** The peer's FIN arrived (or the transport closed without an error). */
  eof = false
  /** The connection is closing: what arrives is dropped. */
  private discarding = false
  /** A receive stopped halfway: the stream is at an unknown point. */
  private broken = false
  /** Bytes delivered to receives, for metrics. */
  bytesReceived = 0
  /** The receive whose turn it is and that waits for bytes. */
  private reader: Incoming | Frame | Prefixed | undefined
  /** Receives, one at a time in call order. */
  private readonly lane = new Lane()
  private readonly host: Host
  /** Reading resumes: the transport reads again, if it is still there. */
  private readonly resumeReading: () => void

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

  /** Something the waiting receive may be waiting for happened: it checks again. */
  wake(): void {
    const reader = this.reader
    if (reader instanceof Frame) this.serveFrame(reader)
    else if (reader instanceof Prefixed) this.servePrefixed(reader)
    else if (reader !== undefined) this.serve(reader)
  }

  // ------------------------------------------------------------ receives

  /**
   * Fills `targets` (of `total` bytes), waiting until `deadline`. With
   * nobody queued and an outcome known already it completes synchronously.
   * Call it while the effect runs.
   */
  recv(targets: ReadonlyArray<Uint8Array>, total: number, deadline: Deadline): Effect.Effect<void, TcpError.RecvError> {
    return this.runReceive(new Incoming(this, targets, total, total <= this.ring.size, false), total, deadline)
  }

  /** What has arrived, up to `max` bytes, waiting until `deadline` for at least one. */
  recvSome(max: number, deadline: Deadline): Effect.Effect<Uint8Array, TcpError.RecvError> {
    const read = new Incoming(this, [], max, true, true)
    return Effect.map(this.runReceive(read, 1, deadline), () => read.targets[0] ?? new Uint8Array(0))
  }

  /**
   * Runs `read` in its turn. `needed` buffered bytes (or a known failure)
   * with nobody ahead finish it synchronously, with no wait to set up;
   * otherwise it enters the lane and waits, all in one step (`attempt`).
   */
  private runReceive(read: Incoming, needed: number, deadline: Deadline): Effect.Effect<void, TcpError.RecvError> {
    if (this.lane.idle && this.outcomeKnown(needed)) {
      const outcome = this.begin(read)
      if (outcome !== undefined) return outcome
    }
    const timedOut = () => TcpError.timedOut("recv", this.host.address)
    return attempt<void, TcpError.RecvError, TcpError.TimedOut>(deadline, timedOut, (resume) => {
      read.resume = resume
      this.lane.enter(read)
      return () => this.abandon(read)
    })
  }

  /** Whether a read needing `needed` bytes can finish (or fail) without waiting. */
  private outcomeKnown(needed: number): boolean {
    return this.ring.count >= needed || this.eof || this.host.failure !== undefined || !this.host.open ||
      this.broken
  }

  /** `read`'s turn has come: it completes now or waits for bytes as the reader. */
  startRead(read: Incoming): void {
    const outcome = this.begin(read)
    if (outcome === undefined) this.reader = read
    else this.end(read, outcome)
  }

  /** The one place a receive's fiber is resumed: its turn ends and the next receive's begins. */
  private end(read: Incoming, outcome: Effect.Effect<void, TcpError.RecvError>): void {
    if (this.reader === read) this.reader = undefined
    this.lane.leave(read)
    read.resume?.(outcome)
  }

  /** A read that timed out or was interrupted: it leaves its turn (or the queue), consuming nothing more. */
  private abandon(read: Incoming): void {
    if (this.reader === read) this.reader = undefined
    this.markIfHalfway(read)
    this.lane.leave(read)
  }

  /** A read that stopped halfway (not at the peer's FIN) leaves the stream at an unknown point. */
  private markIfHalfway(read: Incoming): void {
    if (!this.eof && read.filled > 0 && read.filled < read.total) this.broken = true
  }

  /** Starts a read: its outcome when there is one already, else `undefined` (it waits). */
  private begin(read: Incoming): Effect.Effect<void, TcpError.RecvError> | undefined {
    if (!this.host.open) return Effect.fail(TcpError.closed("recv", this.host.address))
    if (this.broken) {
      return Effect.fail(
        TcpError.make(TcpError.ConnReset, "ECONNRESET", "recv", this.host.address, "an earlier receive stopped halfway")
      )
    }
    return this.step(read)
  }

  /** Moves the waiting read on after bytes, the peer's FIN or an error arrived. */
  private serve(read: Incoming): void {
    const outcome = this.step(read)
    if (outcome !== undefined) this.end(read, outcome)
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
      return Effect.fail(TcpError.peerClosed("recv", gather(read.targets, read.filled), this.host.address))
    }
    const failure = this.host.failure
    if (failure !== undefined) {
      // A read larger than the slot may have taken bytes already: the stream is then at an unknown point.
      this.markIfHalfway(read)
      return Effect.fail(reported(failure, "recv", TcpError.recvTags))
    }
    return undefined
  }

  /** Copies `n` buffered bytes into the read's targets. */
  private copyOut(read: Incoming, n: number): void {
    if (this.ring.copyOut(read.targets, read.filled, n)) this.resumeReading()
    read.filled += n
    this.bytesReceived += n
  }

  // ---------------------------------------------------------- delimiters

  /**
   * The bytes before the next `delimiter`, which is consumed too, waiting
   * until `deadline`. A frame longer than `max` fails `MessageTooLarge`;
   * one that fits in the slot consumes nothing when it fails, times out or
   * is interrupted. The search runs over the ring in place: nothing is
   * copied until the frame is found. Call it while the effect runs.
   */
  recvUntil(delimiter: Uint8Array, max: number, deadline: Deadline): Effect.Effect<Uint8Array, TcpError.RecvUntilError> {
    // Always through the lane: a frame longer than the slot moves bytes out of
    // the ring as it goes, which must never happen outside its turn.
    const frame = new Frame(this, delimiter, max)
    const timedOut = () => TcpError.timedOut("recv", this.host.address)
    return attempt<Uint8Array, TcpError.RecvUntilError, TcpError.TimedOut>(deadline, timedOut, (resume) => {
      frame.resume = resume
      this.lane.enter(frame)
      return () => this.abandonFrame(frame)
    })
  }

  /** `frame`'s turn has come: it completes now or waits for bytes as the reader. */
  startFrame(frame: Frame): void {
    const outcome = this.beginFrame(frame)
    if (outcome === undefined) this.reader = frame
    else this.endFrame(frame, outcome)
  }

  private beginFrame(frame: Frame): Effect.Effect<Uint8Array, TcpError.RecvUntilError> | undefined {
    if (!this.host.open) return Effect.fail(TcpError.closed("recv", this.host.address))
    if (this.broken) {
      return Effect.fail(
        TcpError.make(TcpError.ConnReset, "ECONNRESET", "recv", this.host.address, "an earlier receive stopped halfway")
      )
    }
    return this.stepFrame(frame)
  }

  private serveFrame(frame: Frame): void {
    const outcome = this.stepFrame(frame)
    if (outcome !== undefined) this.endFrame(frame, outcome)
  }

  /** The one place a `recvUntil`'s fiber is resumed. */
  private endFrame(frame: Frame, outcome: Effect.Effect<Uint8Array, TcpError.RecvUntilError>): void {
    if (this.reader === frame) this.reader = undefined
    this.lane.leave(frame)
    frame.resume?.(outcome)
  }

  private abandonFrame(frame: Frame): void {
    if (this.reader === frame) this.reader = undefined
    // Bytes moved out of the ring are gone from the stream: it is at an unknown point.
    if (frame.movedLength > 0) this.broken = true
    this.lane.leave(frame)
  }

  /** Moves a frame forward; returns its outcome once it has one. */
  private stepFrame(frame: Frame): Effect.Effect<Uint8Array, TcpError.RecvUntilError> | undefined {
    const ring = this.ring
    const span = frame.delimiter.length
    for (;;) {
      const found = ring.indexOf(frame.delimiter, frame.scanned)
      if (found !== -1) {
        if (frame.movedLength + found > frame.max) return this.tooLarge(frame)
        const bytes = this.takeFrame(frame, found)
        if (ring.consume(span)) this.resumeReading()
        this.bytesReceived += span
        return Effect.succeed(bytes)
      }
      // No delimiter yet: the frame already holds every byte that cannot start one.
      const certain = Math.max(0, ring.count - (span - 1))
      if (frame.movedLength + certain > frame.max) return this.tooLarge(frame)
      frame.scanned = certain
      // A full ring with a frame allowed to be longer: move what is certain out, so more can arrive.
      if (ring.count < ring.size || certain === 0) break
      const part = new Uint8Array(certain)
      if (ring.copyOut([part], 0, certain)) this.resumeReading()
      frame.moved.push(part)
      frame.movedLength += certain
      this.bytesReceived += certain
      frame.scanned = 0
    }
    if (this.eof) {
      const rest = this.takeFrame(frame, ring.count)
      return Effect.fail(TcpError.peerClosed("recv", rest, this.host.address))
    }
    const failure = this.host.failure
    if (failure !== undefined) {
      if (frame.movedLength > 0) this.broken = true
      return Effect.fail(reported(failure, "recv", TcpError.recvUntilTags))
    }
    return undefined
  }

  /** The frame's moved bytes and the ring's first `n`, as one array; the `n` are consumed. */
  private takeFrame(frame: Frame, n: number): Uint8Array {
    const bytes = new Uint8Array(frame.movedLength + n)
    let at = 0
    for (const part of frame.moved) {
      bytes.set(part, at)
      at += part.length
    }
    if (this.ring.copyOut([bytes], at, n)) this.resumeReading()
    this.bytesReceived += n
    return bytes
  }

  /** Too long: what is still in the ring stays there; what was moved out is gone (the stream is broken). */
  private tooLarge(frame: Frame): Effect.Effect<never, TcpError.MessageTooLarge> {
    if (frame.movedLength > 0) this.broken = true
    return Effect.fail(
      TcpError.make(TcpError.MessageTooLarge, "EMSGSIZE", "recv", this.host.address, `frame longer than ${frame.max} bytes`)
    )
  }

  // ------------------------------------------------------ length prefixes

  /**
   * A message after a header of `header` bytes whose length `lengthOf`
   * reads, waiting until `deadline`. A length past `max` fails
   * `MessageTooLarge` with nothing consumed. Call it while the effect runs.
   */
  recvPrefixed(
    header: number,
    lengthOf: (header: Uint8Array) => number,
    max: number,
    deadline: Deadline
  ): Effect.Effect<Uint8Array, TcpError.RecvUntilError> {
    const message = new Prefixed(this, header, lengthOf, max)
    const timedOut = () => TcpError.timedOut("recv", this.host.address)
    return attempt<Uint8Array, TcpError.RecvUntilError, TcpError.TimedOut>(deadline, timedOut, (resume) => {
      message.resume = resume
      this.lane.enter(message)
      return () => this.abandonPrefixed(message)
    })
  }

  /** `message`'s turn has come: it completes now or waits for bytes as the reader. */
  startPrefixed(message: Prefixed): void {
    const outcome = this.beginPrefixed(message)
    if (outcome === undefined) this.reader = message
    else this.endPrefixed(message, outcome)
  }

  private beginPrefixed(message: Prefixed): Effect.Effect<Uint8Array, TcpError.RecvUntilError> | undefined {
    if (!this.host.open) return Effect.fail(TcpError.closed("recv", this.host.address))
    if (this.broken) {
      return Effect.fail(
        TcpError.make(TcpError.ConnReset, "ECONNRESET", "recv", this.host.address, "an earlier receive stopped halfway")
      )
    }
    return this.stepPrefixed(message)
  }

  private servePrefixed(message: Prefixed): void {
    const outcome = this.stepPrefixed(message)
    if (outcome !== undefined) this.endPrefixed(message, outcome)
  }

  /** The one place a prefixed receive's fiber is resumed. */
  private endPrefixed(message: Prefixed, outcome: Effect.Effect<Uint8Array, TcpError.RecvUntilError>): void {
    if (this.reader === message) this.reader = undefined
    this.lane.leave(message)
    message.resume?.(outcome)
  }

  private abandonPrefixed(message: Prefixed): void {
    if (this.reader === message) this.reader = undefined
    if (message.read !== undefined) this.markIfHalfway(message.read)
    this.lane.leave(message)
  }

  /** Moves a prefixed receive forward: the header in place, then header and body as one exact read. */
  private stepPrefixed(message: Prefixed): Effect.Effect<Uint8Array, TcpError.RecvUntilError> | undefined {
    const ring = this.ring
    if (message.read === undefined) {
      if (ring.count < message.header) {
        if (this.eof) {
          const rest = new Uint8Array(ring.count)
          if (ring.copyOut([rest], 0, rest.length)) this.resumeReading()
          this.bytesReceived += rest.length
          return Effect.fail(TcpError.peerClosed("recv", rest, this.host.address))
        }
        const failure = this.host.failure
        return failure === undefined ? undefined : Effect.fail(reported(failure, "recv", TcpError.recvUntilTags))
      }
      const head = new Uint8Array(message.header)
      ring.peek(message.header, head, 0)
      const length = message.lengthOf(head)
      if (length > message.max) {
        return Effect.fail(
          TcpError.make(TcpError.MessageTooLarge, "EMSGSIZE", "recv", this.host.address, `message of ${length} bytes longer than ${message.max}`)
        )
      }
      let body: Uint8Array
      try {
        body = new Uint8Array(length)
      } catch {
        // A length the header allows but memory cannot hold: nothing consumed, the caller decides.
        return Effect.fail(TcpError.invalid("recv", `cannot allocate ${length} bytes`, this.host.address))
      }
      const total = message.header + length
      message.read = new Incoming(this, [head, body], total, total <= ring.size, false)
    }
    const read = message.read
    const outcome = this.step(read)
    return outcome === undefined ? undefined : Effect.map(outcome, () => read.targets[1] ?? new Uint8Array(0))
  }

  // ------------------------------------------------------------- closing

  /** Fails the receive in progress with `error()`; those queued behind it then start and fail the same way. */
  failWaiting(error: () => TcpError.RecvError): void {
    const reader = this.reader
    if (reader instanceof Frame) this.endFrame(reader, Effect.fail(error()))
    else if (reader instanceof Prefixed) this.endPrefixed(reader, Effect.fail(error()))
    else if (reader !== undefined) this.end(reader, Effect.fail(error()))
  }

  /** A closing connection drains its peer: what is buffered, and what arrives from now on, is dropped. */
  discard(): void {
    this.discarding = true
    if (this.ring.consume(this.ring.count)) this.resumeReading()
  }
}
