import { Effect } from "effect"
import type { Deadline } from "../../Deadline.ts"
import * as TcpError from "../../TcpError.ts"
import { attempt, Lane, type Resume, type Turn } from "../wait.ts"
import { type Host, reported } from "./failure.ts"
import type { Transport } from "./transport.ts"

/**
 * A send (or, with no chunks, the FIN of `done`) in the outbound lane: its
 * bytes, how far the transport took them, and the waiting fiber's resume.
 */
class Outgoing implements Turn {
  offset = 0
  private readonly outbound: Outbound
  readonly chunks: ReadonlyArray<Uint8Array>
  readonly total: number
  readonly syscall: "send" | "done"
  readonly resume: Resume<void, TcpError.SendError>
  constructor(
    outbound: Outbound,
    chunks: ReadonlyArray<Uint8Array>,
    total: number,
    syscall: "send" | "done",
    resume: Resume<void, TcpError.SendError>
  ) {
    this.outbound = outbound
    this.chunks = chunks
    this.total = total
    this.syscall = syscall
    this.resume = resume
  }
  start(): void {
    this.outbound.startSend(this)
  }
}

/**
 * A connection's outbound direction: the lane sends and the FIN take turns
 * in, and its state: open, done (FIN sent), or broken (a send stopped
 * halfway, so the stream is at an unknown point).
 */
export class Outbound {
  state: "open" | "done" | "broken" = "open"
  /** Bytes handed to the transport, for metrics. */
  bytesSent = 0
  /** The send (or FIN) whose turn it is and that waits for the transport, until it completes or is abandoned. */
  private sending: Outgoing | undefined
  /** Sends and the FIN, one at a time in call order. */
  private readonly lane = new Lane()
  private readonly host: Host
  private readonly transport: Transport

  constructor(host: Host, transport: Transport) {
    this.host = host
    this.transport = transport
  }

  /** No send or FIN under way or queued. */
  get idle(): boolean {
    return this.lane.idle && this.sending === undefined
  }

  /**
   * Hands `chunks` (of `total` bytes) to the transport, waiting until
   * `deadline` for what it could not take at once. The send takes its turn
   * and moves its first byte in the same step as its wait begins, so no
   * other send can come between, whatever the fiber does around the call.
   * The caller may reuse its buffers as soon as the send returns, however
   * it ended: an abandoned send is never read from again.
   */
  send(chunks: ReadonlyArray<Uint8Array>, total: number, deadline: Deadline): Effect.Effect<void, TcpError.SendError> {
    const timedOut = () => TcpError.timedOut("send", this.host.address)
    return attempt<void, TcpError.SendError, TcpError.TimedOut>(deadline, timedOut, (resume) => {
      const outgoing = new Outgoing(this, chunks, total, "send", resume)
      this.lane.enter(outgoing)
      return () => this.abandon(outgoing)
    })
  }

  /** Half-close: FIN after what is queued; receiving goes on. */
  done(deadline: Deadline): Effect.Effect<void, TcpError.SendError> {
    const timedOut = () => TcpError.timedOut("done", this.host.address)
    return attempt<void, TcpError.SendError, TcpError.TimedOut>(deadline, timedOut, (resume) => {
      const fin = new Outgoing(this, [], 0, "done", resume)
      this.lane.enter(fin)
      return () => this.abandon(fin)
    })
  }

  /** `outgoing`'s turn has come: it moves what the transport takes now, or waits as the sending one. */
  startSend(outgoing: Outgoing): void {
    const blocked = this.blocked(outgoing.syscall)
    if (blocked !== undefined) return this.end(outgoing, blocked)
    if (outgoing.syscall === "done") {
      this.state = "done"
      this.transport.end()
      if (this.transport.flushed) return this.end(outgoing, undefined)
      this.sending = outgoing
      return
    }
    if (outgoing.total === 0) return this.end(outgoing, undefined)
    this.bytesSent += outgoing.total
    const outcome = this.push(outgoing)
    if (outcome === "waiting") this.sending = outgoing
    else this.end(outgoing, outcome)
  }

  /**
   * The one place a send's fiber is resumed: its turn ends and the next
   * send's begins. A send that failed after moving bytes leaves the
   * stream at an unknown point.
   */
  private end(outgoing: Outgoing, error: TcpError.SendError | undefined): void {
    if (this.sending === outgoing) this.sending = undefined
    if (error !== undefined && outgoing.offset > 0 && this.state === "open") this.state = "broken"
    this.lane.leave(outgoing)
    outgoing.resume(error === undefined ? Effect.void : Effect.fail(error))
  }

  /**
   * A send that timed out or was interrupted: one that had begun may have
   * sent part of its bytes, so the outbound direction cannot be trusted
   * again; its bytes are never read again.
   */
  private abandon(outgoing: Outgoing): void {
    if (this.sending === outgoing) {
      this.sending = undefined
      if (this.state === "open") this.state = "broken"
    }
    this.lane.leave(outgoing)
  }

  /** What was written is through (or failed): the waiting send goes on with its next bytes, or learns its outcome. */
  writable(error?: Error | null): void {
    const outgoing = this.sending
    if (outgoing === undefined) return
    if (error !== undefined && error !== null) return this.end(outgoing, this.failure(error))
    if (!this.transport.flushed) return
    if (outgoing.syscall === "done") return this.end(outgoing, undefined)
    const outcome = this.push(outgoing)
    if (outcome !== "waiting") this.end(outgoing, outcome)
  }

  /** Moves a send on as far as the transport takes it: its outcome, or `"waiting"` for `writable`. */
  private push(outgoing: Outgoing): "waiting" | TcpError.SendError | undefined {
    const reached = this.transport.write(outgoing.chunks, outgoing.offset, outgoing.total)
    if (reached instanceof Error) return this.failure(reached)
    outgoing.offset = reached
    return reached === outgoing.total && (this.transport.flushed || this.transport.taken) ? undefined : "waiting"
  }

  private failure(cause: unknown): TcpError.SendError {
    return TcpError.narrow(TcpError.fromUnknown(cause, "send", this.host.address), TcpError.sendTags)
  }

  /** Why the outbound direction cannot take bytes now, if it cannot. */
  private blocked(syscall: string): TcpError.SendError | undefined {
    const address = this.host.address
    if (!this.host.open) return TcpError.closed(syscall, address)
    if (this.state === "done") {
      return TcpError.make(TcpError.BrokenPipe, "EPIPE", syscall, address, "sending side already finished")
    }
    if (this.state === "broken") {
      return TcpError.make(TcpError.ConnReset, "ECONNRESET", syscall, address, "an earlier send stopped halfway")
    }
    const failure = this.host.failure
    if (failure !== undefined) return reported(failure, syscall, TcpError.sendTags)
    const gone = this.transport.gone
    if (gone === undefined) return undefined
    return gone !== null
      ? this.failure(gone)
      : TcpError.make(TcpError.BrokenPipe, "EPIPE", syscall, address, "connection already closed")
  }

  /** Fails the send in progress with `error`; those queued behind it then start and fail as the connection's state says. */
  failWaiting(error: () => TcpError.SendError): void {
    if (this.sending !== undefined) this.end(this.sending, error())
  }

  /** A closing connection sends its FIN after what is queued, if it has not yet. */
  finish(): void {
    if (this.state !== "done" && this.transport.gone === undefined) this.transport.end()
    this.state = "done"
  }
}
