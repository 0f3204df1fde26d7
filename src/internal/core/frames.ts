import { Effect } from "effect"
import type { Deadline } from "../../Deadline.ts"
import * as TcpError from "../../TcpError.ts"
import { reported } from "./failure.ts"
import { type Inbound, Incoming, Receive } from "./inbound.ts"

/**
 * A receive up to a delimiter (`recvUntil`). The search runs over the ring
 * in place; nothing is copied until the frame is found. A frame longer
 * than the slot moves out of the ring as it arrives (`moved`), all but the
 * bytes a delimiter split across the boundary could start in.
 */
class Frame extends Receive<Uint8Array, TcpError.RecvUntilError> {
  readonly delimiter: Uint8Array
  readonly max: number
  private readonly moved: Array<Uint8Array> = []
  private movedLength = 0
  /** Where the next search in the ring starts: no delimiter starts before it. */
  private scanned = 0
  constructor(inbound: Inbound, delimiter: Uint8Array, max: number) {
    super(inbound)
    this.delimiter = delimiter
    this.max = max
  }

  refuse(error: TcpError.Closed | TcpError.ConnReset): Effect.Effect<Uint8Array, TcpError.RecvUntilError> {
    return Effect.fail(error)
  }

  /** Bytes moved out of the ring are gone from the stream. */
  halfway(): boolean {
    return this.movedLength > 0
  }

  step(): Effect.Effect<Uint8Array, TcpError.RecvUntilError> | undefined {
    const inbound = this.inbound
    const ring = inbound.ring
    const span = this.delimiter.length
    for (;;) {
      const found = ring.indexOf(this.delimiter, this.scanned)
      if (found !== -1) {
        if (this.movedLength + found > this.max) return this.tooLarge()
        const bytes = this.collect(found)
        inbound.skip(span)
        return Effect.succeed(bytes)
      }
      // No delimiter yet: the frame already holds every byte that cannot start one.
      const certain = Math.max(0, ring.count - (span - 1))
      if (this.movedLength + certain > this.max) return this.tooLarge()
      this.scanned = certain
      // A full ring with a frame allowed to be longer: move what is certain out, so more can arrive.
      if (ring.count < ring.size || certain === 0) break
      const part = new Uint8Array(certain)
      inbound.take(certain, [part], 0)
      this.moved.push(part)
      this.movedLength += certain
      this.scanned = 0
    }
    if (inbound.eof) return Effect.fail(TcpError.peerClosed("recv", this.collect(ring.count), inbound.host.address))
    const failure = inbound.host.failure
    if (failure !== undefined) {
      if (this.halfway()) inbound.markBroken()
      return Effect.fail(reported(failure, "recv", TcpError.recvUntilTags))
    }
    return undefined
  }

  /** The moved bytes and the ring's first `n`, as one array; the `n` are consumed. */
  private collect(n: number): Uint8Array {
    const bytes = new Uint8Array(this.movedLength + n)
    let at = 0
    for (const part of this.moved) {
      bytes.set(part, at)
      at += part.length
    }
    this.inbound.take(n, [bytes], at)
    return bytes
  }

  /** Too long: what is still in the ring stays there; what was moved out is gone (the stream is broken). */
  private tooLarge(): Effect.Effect<never, TcpError.MessageTooLarge> {
    if (this.halfway()) this.inbound.markBroken()
    return Effect.fail(
      TcpError.make(TcpError.MessageTooLarge, "EMSGSIZE", "recv", this.inbound.host.address, `frame longer than ${this.max} bytes`)
    )
  }
}

/**
 * The bytes before the next `delimiter`, which is consumed too, waiting
 * until `deadline`. A frame longer than `max` fails `MessageTooLarge`; one
 * that fits in the slot consumes nothing when it fails, times out or is
 * interrupted. With nobody in the lane, a frame whose outcome is known
 * already (its delimiter buffered, say) ends synchronously, with no wait to
 * set up: nothing can come between, so that is its turn. Otherwise it
 * takes its turn in the lane: a frame longer than the slot moves bytes out
 * of the ring as it goes, which must never happen outside its turn. Call
 * it while the effect runs.
 */
export const recvUntil = (
  inbound: Inbound,
  delimiter: Uint8Array,
  max: number,
  deadline: Deadline
): Effect.Effect<Uint8Array, TcpError.RecvUntilError> => {
  const frame = new Frame(inbound, delimiter, max)
  if (inbound.idle && inbound.host.open) {
    const outcome = frame.step()
    if (outcome !== undefined) return outcome
  }
  return inbound.run(frame, deadline)
}

/**
 * The frames buffered whole, up to `limit` of them, if nobody is in the
 * lane (then this is their turn): each frame's bytes before its delimiter
 * are pushed onto `into`, and they and their delimiters are consumed. They
 * are copied out in one block (views into it), as a chunk of a byte stream
 * holds many lines. Stops before a frame longer than `max`, which its own
 * receive then reports; consumes nothing when no frame is whole.
 */
export const recvBuffered = (
  inbound: Inbound,
  delimiter: Uint8Array,
  max: number,
  limit: number,
  into: Array<Uint8Array>
): void => {
  if (!inbound.idle || !inbound.host.open) return
  const ring = inbound.ring
  const ends: Array<number> = []
  let from = 0
  while (ends.length < limit) {
    const found = ring.indexOf(delimiter, from)
    if (found === -1 || found - from > max) break
    ends.push(found)
    from = found + delimiter.length
  }
  if (ends.length === 0) return
  const block = new Uint8Array(from)
  inbound.take(from, [block], 0)
  let start = 0
  for (const end of ends) {
    into.push(block.subarray(start, end))
    start = end + delimiter.length
  }
}

/**
 * A length-prefixed message (`TcpMessage.prefix`): the header is read in
 * place, so a length past `max` fails with nothing consumed; header and
 * body are then one exact read (`read`), retry-safe when both fit in the
 * slot.
 */
class Prefixed extends Receive<Uint8Array, TcpError.RecvUntilError> {
  readonly header: number
  readonly lengthOf: (header: Uint8Array) => number
  readonly max: number
  private read: Incoming | undefined
  constructor(inbound: Inbound, header: number, lengthOf: (header: Uint8Array) => number, max: number) {
    super(inbound)
    this.header = header
    this.lengthOf = lengthOf
    this.max = max
  }

  refuse(error: TcpError.Closed | TcpError.ConnReset): Effect.Effect<Uint8Array, TcpError.RecvUntilError> {
    return Effect.fail(error)
  }

  halfway(): boolean {
    return this.read?.halfway() ?? false
  }

  step(): Effect.Effect<Uint8Array, TcpError.RecvUntilError> | undefined {
    const inbound = this.inbound
    const ring = inbound.ring
    if (this.read === undefined) {
      if (ring.count < this.header) {
        if (inbound.eof) {
          const rest = new Uint8Array(ring.count)
          inbound.take(rest.length, [rest], 0)
          return Effect.fail(TcpError.peerClosed("recv", rest, inbound.host.address))
        }
        const failure = inbound.host.failure
        return failure === undefined ? undefined : Effect.fail(reported(failure, "recv", TcpError.recvUntilTags))
      }
      const head = new Uint8Array(this.header)
      ring.peek(this.header, head, 0)
      const length = this.lengthOf(head)
      if (length > this.max) {
        return Effect.fail(
          TcpError.make(
            TcpError.MessageTooLarge,
            "EMSGSIZE",
            "recv",
            inbound.host.address,
            `message of ${length} bytes longer than ${this.max}`
          )
        )
      }
      let body: Uint8Array
      try {
        body = new Uint8Array(length)
      } catch {
        // A length the header allows but memory cannot hold: nothing consumed, the caller decides.
        return Effect.fail(TcpError.invalid("recv", `cannot allocate ${length} bytes`, inbound.host.address))
      }
      const total = this.header + length
      this.read = new Incoming(inbound, [head, body], total, total <= ring.size, false)
    }
    const read = this.read
    const outcome = read.step()
    return outcome === undefined ? undefined : Effect.map(outcome, () => read.targets[1] ?? new Uint8Array(0))
  }
}

/**
 * A length-prefixed message: a `header`-byte length (`lengthOf` reads it)
 * then that many bytes, waiting until `deadline`. Call it while the effect
 * runs.
 */
export const recvPrefixed = (
  inbound: Inbound,
  header: number,
  lengthOf: (header: Uint8Array) => number,
  max: number,
  deadline: Deadline
): Effect.Effect<Uint8Array, TcpError.RecvUntilError> =>
  inbound.run(new Prefixed(inbound, header, lengthOf, max), deadline)
