import { Clock, Duration, Effect, Exit, Inspectable } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import type { Deadline } from "../Deadline.ts"
import * as TcpError from "../TcpError.ts"
import { gather } from "./bytes.ts"
import type { Pool, SlotMemory } from "./pool.ts"
import { attempt, fitsNodeTimer, Lane, type Resume, suspend, type Turn } from "./wait.ts"

/**
 * The descriptor under a connected Node socket, while Node still holds it
 * open (`undefined` once its handle is gone, so a number reused by another
 * file is never written to, and where Node has none).
 */
const descriptorOf = (socket: Net.Socket): number | undefined => {
  const handle: unknown = Reflect.get(socket, "_handle")
  if (typeof handle !== "object" || handle === null) return undefined
  const fd: unknown = Reflect.get(handle, "fd")
  return typeof fd === "number" && fd >= 0 ? fd : undefined
}

/** One byte to read into where the stream has ended: nothing ever lands in it. */
const endProbe = new Uint8Array(1)

/**
 * The reset hidden behind an end of stream, if any. libuv before 1.52 (Node
 * 22) reports a peer's RST that arrives behind unread bytes as EOF, after
 * reading those bytes, and leaves the reset pending on the descriptor: one
 * read of it tells a FIN (0 bytes) from a reset (ECONNRESET). Node 24 reports
 * the reset itself.
 */
const pendingReset = (socket: Net.Socket): Error | undefined => {
  const fd = descriptorOf(socket)
  if (fd === undefined) return undefined
  try {
    Fs.readSync(fd, endProbe)
    return undefined
  } catch (cause) {
    return cause instanceof Error && Reflect.get(cause, "code") === "ECONNRESET" ? cause : undefined
  }
}

/**
 * A send (or, with no chunks, the FIN of `done`) in the outbound lane: its
 * bytes, how many went to the kernel or to Node so far, and the waiting
 * fiber's resume.
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

/** The most a waiting send hands Node at a time, copied: enough to learn when the socket can take more. */
const PIECE = 1024

/** `chunks` from byte `offset` on, as views. */
const remaining = (chunks: ReadonlyArray<Uint8Array>, offset: number): ReadonlyArray<Uint8Array> => {
  if (offset === 0) return chunks
  const rest: Array<Uint8Array> = []
  let position = 0
  for (const chunk of chunks) {
    const end = position + chunk.length
    if (end > offset) rest.push(position >= offset ? chunk : chunk.subarray(offset - position))
    position = end
  }
  return rest
}

type Failure = Exclude<TcpError.TcpError, TcpError.PeerClosed>

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
 * One TCP connection on one storage slot.
 *
 * Inbound bytes land in the slot's buffer through Node's `onread`, kept as
 * a ring: the `count` unconsumed bytes start at `start` and wrap at the
 * buffer's end, and Node's next read goes to the free bytes after them.
 * When the ring is full, reading stops (the kernel's window closes on the
 * peer) until receives have consumed the region Node will read into next.
 * Nothing is allocated per read, and a receive copies straight from the
 * slot into the caller's memory.
 *
 * Node takes each next region from `onread`'s buffer function, at the end
 * of a read callback. Its other way in, the handle's `useUserBuffer`,
 * stacks a native listener per call that lives as long as the socket, so
 * the region for after a pause is chosen when reading stops.
 *
 * Sends go straight from the caller's memory to the descriptor as far as
 * the kernel takes them; while it is full, Node gets one small copied piece
 * at a time to say when it can take more (`push`). A send completes once
 * the kernel took every byte, and Node never holds the caller's memory, so
 * the caller may reuse it as soon as the send returns, however it ended.
 */
export class Connection extends Inspectable.Class {
  readonly socket: Net.Socket
  /** `host:port` of the peer, for error messages, where known. */
  address: string | undefined
  /** Receives, one at a time in call order. */
  private readonly inbound = new Lane()
  /** Sends and the FIN, one at a time in call order. */
  private readonly outboundLane = new Lane()

  private readonly slot: SlotMemory
  private readonly buffer: Buffer
  private start = 0
  private count = 0
  /** Where Node reads next: free space after the unconsumed bytes, or, while paused, what will be. */
  private region: Buffer
  private readPaused = false
  /** Bytes consumed since reading paused: reading resumes once they cover `region`. */
  private consumedSincePause = 0
  private eof = false
  private discarding = false
  private failure: Failure | undefined
  /** The receive whose turn it is and that waits for bytes. */
  private reader: Incoming | undefined
  private inboundBroken = false

  private outbound: "open" | "done" | "broken" = "open"
  /** The send (or FIN) whose turn it is and that waits for Node, until it completes or is abandoned. */
  private sending: Outgoing | undefined

  private phase: "open" | "closing" | "closed" = "open"
  private handleClosed = false
  private released = false
  /** Called once the socket is closed and Node no longer touches the slot. */
  onRelease: () => void
  /** Bytes handed to Node and delivered to receives, for metrics. */
  bytesSent = 0
  bytesReceived = 0
  /** Reports the byte counts when the connection is released (set when metrics are on). */
  onReleased: ((figures: { readonly bytesSent: number; readonly bytesReceived: number }) => void) | undefined
  private readonly closeWaiters: Array<() => void> = []
  private finWaiter: Resume<void, TcpError.CloseError> | undefined
  /** Ends a graceful close in the background (`linger`) once the descriptor is closed. */
  private stopLingering: (() => void) | undefined

  constructor(slot: SlotMemory, address: string | undefined, onRelease: () => void, options: Net.SocketConstructorOpts) {
    super()
    this.slot = slot
    this.buffer = slot.buffer
    this.region = slot.buffer
    this.address = address
    this.onRelease = onRelease
    this.socket = new Net.Socket({
      ...options,
      allowHalfOpen: true,
      onread: { buffer: () => this.region, callback: (n) => this.onRead(n) }
    })
    this.socket.on("end", () => this.onEnd())
    this.socket.on("error", (error) => this.onError(error))
    this.socket.on("close", () => this.onClose())
  }

  /**
   * What printing the connection (or its socket) shows: addresses, state
   * and sizes. Never the slot's bytes, which may be another connection's
   * (slots are reused without clearing), nor Node's socket.
   */
  summary() {
    const host = this.socket.localAddress
    const port = this.socket.localPort
    const local = host === undefined || port === undefined ? undefined : host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`
    return {
      remoteAddress: this.address,
      localAddress: local,
      state: this.phase !== "open" ? this.phase : this.outbound,
      peerFinished: this.eof,
      unread: this.count,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      slot: { id: this.slot.id, bufferSize: this.buffer.length }
    }
  }

  toJSON() {
    return { _id: "Connection", ...this.summary() }
  }

  // ---------------------------------------------------------------- inbound

  private onRead(nread: number): boolean {
    if (!this.discarding) this.count += nread
    if (this.reader !== undefined) this.serve(this.reader)
    // Node's previous region is used up: the ring may move back to the front.
    if (this.count === 0) this.start = 0
    this.chooseRegion()
    return !this.readPaused
  }

  /**
   * Picks where Node reads next: the free bytes right after the unconsumed
   * ones, up to the buffer's end or the ring's start. A full ring pauses
   * reading; its region is then the oldest quarter (up to the buffer's
   * end), free once receives consumed that much.
   */
  private chooseRegion(): void {
    const size = this.buffer.length
    const tail = this.start + this.count
    if (this.count === size) {
      this.readPaused = true
      this.consumedSincePause = 0
      this.region = this.buffer.subarray(this.start, Math.min(size, this.start + Math.max(1, size >>> 2)))
    } else {
      this.region = tail < size ? this.buffer.subarray(tail) : this.buffer.subarray(tail - size, this.start)
    }
  }

  private resumeReading(): void {
    if (!this.readPaused || this.handleClosed || this.consumedSincePause < this.region.length) return
    this.readPaused = false
    // Node restarts an onread socket's reads from `read()` when its handle stopped.
    this.socket.read(0)
  }

  private consume(count: number): void {
    this.start = (this.start + count) % this.buffer.length
    this.count -= count
    if (this.readPaused) {
      this.consumedSincePause += count
      this.resumeReading()
    }
  }

  /** Copies `count` ring bytes from `from` into `target` at `offset`, across the wrap. */
  private copyRing(from: number, count: number, target: Uint8Array, offset: number): void {
    const size = this.buffer.length
    const first = Math.min(count, size - from)
    this.buffer.copy(target, offset, from, from + first)
    if (first < count) this.buffer.copy(target, offset + first, 0, count - first)
  }

  /** Copies `count` buffered bytes into the read's targets. */
  private copyOut(read: Incoming, count: number): void {
    const size = this.buffer.length
    let offset = read.filled
    let from = this.start
    let left = count
    for (const target of read.targets) {
      if (left === 0) break
      if (offset >= target.length) {
        offset -= target.length
        continue
      }
      const n = Math.min(target.length - offset, left)
      this.copyRing(from, n, target, offset)
      from = (from + n) % size
      left -= n
      offset = 0
    }
    read.filled += count
    this.bytesReceived += count
    this.consume(count)
  }

  /** Moves a read forward; returns its outcome once it has one. */
  private step(read: Incoming): Effect.Effect<void, TcpError.RecvError> | undefined {
    const buffered = this.count
    if (read.some && buffered > 0 && read.targets.length === 0) {
      read.total = Math.min(buffered, read.total)
      read.targets = [new Uint8Array(read.total)]
    }
    const wanted = read.total - read.filled
    if (buffered >= wanted) {
      this.copyOut(read, wanted)
      return Effect.void
    }
    if (!read.atomic && buffered > 0) this.copyOut(read, buffered)
    if (this.eof) {
      if (this.count > 0) this.copyOut(read, this.count)
      return Effect.fail(TcpError.peerClosed("recv", collect(read), this.address))
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
    return this.read(new Incoming(this, targets, total, total <= this.buffer.length, false), total, deadline)
  }

  /**
   * What has arrived, up to `max` bytes, waiting until `deadline` for at
   * least one; `PeerClosed` (with no bytes) once the peer finished. Call it
   * while the effect runs.
   */
  recvSome(max: number, deadline: Deadline): Effect.Effect<Uint8Array, TcpError.RecvError> {
    const read = new Incoming(this, [], max, true, true)
    return Effect.map(this.read(read, 1, deadline), () => read.targets[0] ?? new Uint8Array(0))
  }

  private readonly recvTimedOut = () => TcpError.timedOut("recv", this.address)
  private readonly sendTimedOut = () => TcpError.timedOut("send", this.address)
  private readonly doneTimedOut = () => TcpError.timedOut("done", this.address)

  /**
   * Runs `read` in its turn. `needed` buffered bytes (or a known failure)
   * with nobody ahead finish it synchronously, with no wait to set up;
   * otherwise it enters the lane and waits, all in one step (`attempt`).
   */
  private read(read: Incoming, needed: number, deadline: Deadline): Effect.Effect<void, TcpError.RecvError> {
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
    return this.count >= needed || this.eof || this.failure !== undefined || this.phase !== "open" ||
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

  /** Connects to `target`, waiting until `deadline`. */
  connect(target: Net.TcpNetConnectOpts, deadline: Deadline): Effect.Effect<void, TcpError.ConnectError> {
    const socket = this.socket
    return suspend<void, TcpError.ConnectError, TcpError.TimedOut>(
      deadline,
      () => TcpError.timedOut("connect", this.address),
      (resume) => {
        const cleanup = () => {
          socket.off("connect", onConnect)
          socket.off("error", onError)
        }
        const onConnect = () => {
          cleanup()
          resume(Effect.void)
        }
        const onError = (cause: Error) => {
          cleanup()
          const error = TcpError.fromUnknown(cause, "connect", this.address)
          resume(Effect.fail(TcpError.narrow(error, TcpError.connectTags)))
        }
        socket.once("connect", onConnect)
        socket.once("error", onError)
        socket.connect(target)
        return cleanup
      }
    )
  }

  // --------------------------------------------------------------- outbound

  /**
   * Hands `chunks` (of `total` bytes) to the kernel, waiting until
   * `deadline` for what it could not take at once. The send takes its turn
   * and moves its first byte in the same step as its wait begins, so no
   * other send can come between, whatever the fiber does around the call.
   * The caller may reuse its buffers as soon as the send returns, however
   * it ended: an abandoned send is never read from again.
   */
  send(chunks: ReadonlyArray<Uint8Array>, total: number, deadline: Deadline): Effect.Effect<void, TcpError.SendError> {
    return attempt<void, TcpError.SendError, TcpError.TimedOut>(deadline, this.sendTimedOut, (resume) => {
      const outgoing = new Outgoing(this, chunks, total, "send", resume)
      this.outboundLane.enter(outgoing)
      return () => this.abandonSend(outgoing)
    })
  }

  /** Half-close: FIN after what is queued; receiving goes on. */
  done(deadline: Deadline): Effect.Effect<void, TcpError.SendError> {
    return attempt<void, TcpError.SendError, TcpError.TimedOut>(deadline, this.doneTimedOut, (resume) => {
      const fin = new Outgoing(this, [], 0, "done", resume)
      this.outboundLane.enter(fin)
      return () => this.abandonSend(fin)
    })
  }

  /** `outgoing`'s turn has come: it moves what the kernel takes now, or waits as the sending one. */
  startSend(outgoing: Outgoing): void {
    const blocked = this.outboundBlocked(outgoing.syscall)
    if (blocked !== undefined) return this.endSend(outgoing, blocked)
    if (outgoing.syscall === "done") {
      this.outbound = "done"
      this.socket.end(this.onWritten)
      if (this.socket.writableLength === 0) return this.endSend(outgoing, undefined)
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

  /**
   * Node finished a write (a send's piece, or the FIN): the waiting send
   * goes on with its next bytes, or learns its outcome.
   */
  private readonly onWritten = (error?: Error | null): void => {
    const outgoing = this.sending
    if (outgoing === undefined) return
    if (error !== undefined && error !== null) return this.endSend(outgoing, this.sendFailure(error))
    if (this.socket.writableLength !== 0) return
    if (outgoing.syscall === "done") return this.endSend(outgoing, undefined)
    const outcome = this.push(outgoing)
    if (outcome !== "waiting") this.endSend(outgoing, outcome)
  }

  /**
   * Moves a send on: straight from the caller's memory as far as the
   * kernel takes it, then one small copied piece through Node, whose
   * completion (`onWritten`) says the socket can take more. Node never
   * holds the caller's memory, and a waiting send holds at most `PIECE`
   * copied bytes.
   */
  private push(sending: Outgoing): "waiting" | TcpError.SendError | undefined {
    const fd = descriptorOf(this.socket)
    if (fd !== undefined && sending.offset < sending.total) {
      try {
        const rest = remaining(sending.chunks, sending.offset)
        const only = rest.length === 1 ? rest[0] : undefined
        sending.offset += only !== undefined ? Fs.writeSync(fd, only) : Fs.writevSync(fd, rest)
      } catch (cause) {
        const code: unknown = Reflect.get(Object(cause), "code")
        if (code !== "EAGAIN" && code !== "EWOULDBLOCK") return this.writeFailed(cause)
      }
    }
    if (sending.offset === sending.total) return undefined
    // Without a descriptor (not on Linux) Node takes the whole rest, copied.
    const until = fd === undefined ? sending.total : Math.min(sending.total, sending.offset + PIECE)
    const piece = gather(sending.chunks, until, sending.offset)
    sending.offset = until
    this.socket.write(piece, this.onWritten)
    return "waiting"
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
    if (this.socket.destroyed) {
      return this.socket.errored !== null
        ? this.sendFailure(this.socket.errored)
        : TcpError.make(TcpError.BrokenPipe, "EPIPE", syscall, this.address, "connection already closed")
    }
    return undefined
  }

  /**
   * A write on the descriptor failed: the connection is broken, as if
   * Node's own write had failed. Node reports that on the next tick, never
   * inside the caller's fiber, and so does this.
   */
  private writeFailed(cause: unknown): TcpError.SendError {
    const error = cause instanceof Error ? cause : new Error(String(cause))
    process.nextTick(() => this.onError(error))
    return this.sendFailure(cause)
  }

  // -------------------------------------------------------------- lifecycle

  private onEnd(): void {
    const reset = pendingReset(this.socket)
    // As Node 24 does with the reset it reads: 'error', then 'close'.
    if (reset !== undefined) return void this.socket.destroy(reset)
    this.eof = true
    if (this.reader !== undefined) this.serve(this.reader)
    this.wakeFin(Effect.void)
  }

  private onError(cause: Error): void {
    const syscall = Reflect.get(cause, "syscall")
    const outbound = syscall === "write" || syscall === "writev" || syscall === "shutdown"
    const failure = TcpError.fromUnknown(cause, outbound ? "send" : "recv", this.address)
    this.failure ??= failure
    if (this.reader !== undefined) this.serve(this.reader)
    if (this.sending !== undefined) this.endSend(this.sending, reported(failure, "send", TcpError.sendTags))
    this.wakeFin(Effect.fail(reported(failure, "close", TcpError.closeTags)))
  }

  private onClose(): void {
    this.handleClosed = true
    // Node closed the descriptor without an EOF or an error to report:
    // nothing more will arrive, which receives see as the end of the stream.
    if (this.failure === undefined) this.eof = true
    if (this.reader !== undefined) this.serve(this.reader)
    this.wakeFin(Effect.void)
    this.releaseIfDone()
    for (const wake of this.closeWaiters.splice(0)) wake()
  }

  private wakeFin(outcome: Effect.Effect<void, TcpError.CloseError>): void {
    const waiter = this.finWaiter
    if (waiter === undefined) return
    this.finWaiter = undefined
    waiter(outcome)
  }

  private releaseIfDone(): void {
    if (this.released || !this.handleClosed || this.phase !== "closed") return
    this.released = true
    this.onRelease()
    this.onReleased?.({ bytesSent: this.bytesSent, bytesReceived: this.bytesReceived })
  }

  /**
   * Fails the receive and the send in progress with `Closed`; those queued
   * behind them then start and fail the same way.
   */
  private failWaiters(): void {
    if (this.reader !== undefined) this.endRead(this.reader, Effect.fail(TcpError.closed("recv", this.address)))
    if (this.sending !== undefined) this.endSend(this.sending, TcpError.closed("send", this.address))
  }

  /** Closes the descriptor now (RST if unread data is pending); the slot returns once Node closed the handle. */
  private closeNow(): void {
    if (this.phase === "closed") return
    this.phase = "closed"
    this.failWaiters()
    this.socket.destroy()
    this.stopLingering?.()
    // Node may have closed the handle already: then no close event is coming to release the slot.
    if (this.handleClosed) this.releaseIfDone()
  }

  /**
   * Immediate close: the descriptor goes now (RST if unread data is
   * pending) and the slot returns once Node has closed the handle.
   */
  readonly abort: Effect.Effect<void> = Effect.uninterruptible(
    Effect.callback<void>((resume) => {
      this.closeNow()
      if (this.handleClosed) {
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
    if (this.outbound !== "done" && !this.socket.destroyed) this.socket.end()
    this.outbound = "done"
    this.discarding = true
    this.consume(this.count)
    return true
  }

  /** Waits for the peer's FIN (or an error) until `deadline`. */
  private awaitPeerFin(deadline: Deadline): Effect.Effect<void, TcpError.CloseError> {
    return Effect.suspend(() => {
      if (this.failure !== undefined) return Effect.fail(reported(this.failure, "close", TcpError.closeTags))
      if (this.eof || this.handleClosed) return Effect.void
      return suspend<void, TcpError.CloseError, TcpError.TimedOut>(
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
      if (!this.beginClose()) return Effect.fail(TcpError.closed("close", this.address))
      return Effect.ensuring(this.awaitPeerFin(deadline), this.abort)
    })
  }

  /**
   * The Scope's finalizer. After success the FIN goes out now and the rest
   * of the graceful close (waiting for the peer's FIN, at most
   * `closeTimeout`, then closing the descriptor) goes on without the scope;
   * otherwise abort at once.
   */
  finalize(exit: Exit.Exit<unknown, unknown>, closeTimeout: Duration.Duration, pool: Pool): Effect.Effect<void> {
    if (Exit.isFailure(exit)) return this.abort
    return Effect.withFiber((fiber) => {
      if (!this.beginClose()) return Effect.void
      // The slot's owner may hand it to a new socket, which then waits for this close.
      this.slot.closing = true
      const millis = Duration.toMillis(closeTimeout)
      if (fitsNodeTimer(fiber, millis)) {
        this.linger(millis, pool.lingering)
        return Effect.void
      }
      // Another clock decides when the wait ends: a fiber in the pool's scope waits on it.
      const lingering = Effect.flatMap(Clock.currentTimeMillis, (now) => this.awaitPeerFin(now + millis)).pipe(
        Effect.ignore,
        Effect.ensuring(this.abort)
      )
      return Effect.asVoid(Effect.forkIn(lingering, pool.background))
    })
  }

  /**
   * Waits up to `millis` for the peer's FIN on a plain timer, then closes
   * the descriptor: no fiber per closing connection. `lingering` holds the
   * connection meanwhile, so the pool can abort it when it closes.
   */
  private linger(millis: number, lingering: Set<{ readonly abort: Effect.Effect<void> }>): void {
    if (this.eof || this.handleClosed || this.failure !== undefined || millis <= 0) return this.closeNow()
    lingering.add(this)
    const timer = setTimeout(() => this.closeNow(), millis)
    this.finWaiter = () => this.closeNow()
    this.stopLingering = () => {
      clearTimeout(timer)
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

/** The bytes a read had gathered, as one array. */
const collect = (read: Incoming): Uint8Array => gather(read.targets, read.filled)
