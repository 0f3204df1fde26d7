/**
 * libdill's message protocols over a TcpSocket: validation of the
 * protocols' options, framing of sent messages (one `sendv` per message, so
 * concurrent senders never interleave) and receives (`recvUntil` for the
 * delimited protocols, header then body for the prefixed one).
 */
import { Cause, Effect, Inspectable, Semaphore, Sink, Stream } from "effect"
import type { Array as Arr } from "effect"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import { kMaxLength } from "node:buffer"
import * as Deadline from "../Deadline.ts"
import * as TcpError from "../TcpError.ts"
import { isTcpSocket, type TcpSocket } from "../TcpSocket.ts"
import { delimiterOf, gather, isBytes, maxOf, totalOf } from "./bytes.ts"
import { connectionOf } from "./tcpSocket.ts"

/** `TcpMessage.TypeId`. */
export const TypeId = "~effect-tcp/MessageSocket" as const

/** What a MessageSocket frames with: a delimiter after each message, or a length before it. */
export type Framing =
  | { readonly _tag: "Delimited"; readonly delimiter: Uint8Array }
  | { readonly _tag: "Prefixed"; readonly size: 1 | 2 | 4 | 8; readonly endian: "big" | "little" }

/** The largest length each header size can express. */
const headerLimit = (size: 1 | 2 | 4 | 8): number =>
  size === 8 ? Number.MAX_SAFE_INTEGER : 2 ** (8 * size) - 1

/** Bad input: `syscall` is `"attach"` (libdill's `*_attach`) for the protocols' options, else the call's. */
const invalid = (detail: string, socket?: TcpSocket, syscall = "attach") =>
  Effect.fail(TcpError.invalid(syscall, detail, connectionOf(socket)?.address))

const tooLarge = (syscall: string, detail: string, address: string | undefined) =>
  TcpError.make(TcpError.MessageTooLarge, "EMSGSIZE", syscall, address, detail)

/** `max` as given (an integer in 1..kMaxLength), or `undefined` when left out; an error text when bad. */
const checkMax = (options: unknown): number | undefined | string => {
  if (options === undefined) return undefined
  if (typeof options !== "object" || options === null) return "options must be an object"
  const max: unknown = Reflect.get(options, "max")
  return max === undefined ? undefined : maxOf(max, 0, kMaxLength)
}

/** The most messages a stream's pull hands on at once. */
const STREAM_BATCH = 1024

/** Builds a delimited MessageSocket, or fails `InvalidArgument`. */
export const delimited = (
  socket: unknown,
  delimiter: unknown,
  options: unknown
): Effect.Effect<MessageSocketImpl, TcpError.InvalidArgument> => {
  if (!isTcpSocket(socket)) return invalid("expected a TcpSocket")
  const slotSize = connectionOf(socket)?.slotSize
  const bytes = delimiterOf(delimiter, slotSize ?? Number.POSITIVE_INFINITY)
  if (typeof bytes === "string") return invalid(bytes, socket)
  const max = checkMax(options)
  if (typeof max === "string") return invalid(max, socket)
  return Effect.succeed(new MessageSocketImpl(socket, { _tag: "Delimited", delimiter: bytes }, max ?? slotSize))
}

/** Builds a prefixed MessageSocket, or fails `InvalidArgument`. */
export const prefixed = (socket: unknown, options: unknown): Effect.Effect<MessageSocketImpl, TcpError.InvalidArgument> => {
  if (!isTcpSocket(socket)) return invalid("expected a TcpSocket")
  const max = checkMax(options)
  if (typeof max === "string") return invalid(max, socket)
  const size: unknown = options === undefined ? undefined : Reflect.get(options as object, "size")
  const endian: unknown = options === undefined ? undefined : Reflect.get(options as object, "endian")
  if (size !== undefined && size !== 1 && size !== 2 && size !== 4 && size !== 8) {
    return invalid("size must be 1, 2, 4 or 8", socket)
  }
  if (endian !== undefined && endian !== "big" && endian !== "little") {
    return invalid(`endian must be "big" or "little"`, socket)
  }
  const framing = { _tag: "Prefixed", size: size ?? 4, endian: endian ?? "big" } as const
  return Effect.succeed(new MessageSocketImpl(socket, framing, max ?? connectionOf(socket)?.slotSize))
}

/**
 * Whether `parts` followed by `delimiter` hold the delimiter anywhere before
 * their end: a message containing it, or ending with bytes that start a
 * delimiter together with the one appended (`"xa"` before `"aa"`), would be
 * cut short by the receiver.
 */
const containsDelimiter = (parts: ReadonlyArray<Uint8Array>, total: number, delimiter: Uint8Array): boolean => {
  for (const part of parts) {
    if (Buffer.from(part.buffer, part.byteOffset, part.length).indexOf(delimiter) !== -1) return true
  }
  if (delimiter.length === 1) return false
  // Occurrences across a boundary between two parts, the appended delimiter being the last part.
  const sequence = [...parts, delimiter]
  const reach = delimiter.length - 1
  let boundary = 0
  for (const part of parts) {
    boundary += part.length
    if (part.length === 0) continue
    const from = Math.max(0, boundary - reach)
    const until = Math.min(total + delimiter.length, boundary + reach)
    const window = Buffer.from(gather(sequence, until, from))
    const found = window.indexOf(delimiter)
    if (found !== -1 && from + found < total) return true
  }
  return false
}

/** The header for a message of `length` bytes. */
const header = (size: 1 | 2 | 4 | 8, endian: "big" | "little", length: number): Uint8Array => {
  const bytes = new Uint8Array(size)
  const view = new DataView(bytes.buffer)
  const little = endian === "little"
  if (size === 1) view.setUint8(0, length)
  else if (size === 2) view.setUint16(0, length, little)
  else if (size === 4) view.setUint32(0, length, little)
  else view.setBigUint64(0, BigInt(length), little)
  return bytes
}

/** The length a header says; past `Number.MAX_SAFE_INTEGER` it is `Infinity`. */
const lengthOf = (bytes: Uint8Array, size: 1 | 2 | 4 | 8, endian: "big" | "little"): number => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, size)
  const little = endian === "little"
  if (size === 1) return view.getUint8(0)
  if (size === 2) return view.getUint16(0, little)
  if (size === 4) return view.getUint32(0, little)
  const length = view.getBigUint64(0, little)
  return length > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(length)
}

type Refused = TcpError.InvalidArgument | TcpError.MessageTooLarge

const isRefused = (framed: ReadonlyArray<Uint8Array> | Refused): framed is Refused => !Array.isArray(framed)

/** `TcpMessage.MessageSocket`. */
export class MessageSocketImpl extends Inspectable.Class implements Pipeable {
  readonly [TypeId] = TypeId
  readonly socket: TcpSocket
  readonly framing: Framing
  /** The longest message sent or received; `undefined` (a socket of another make): no bound on sends. */
  readonly max: number | undefined
  private readonly recvOptions: { readonly max?: number | undefined }
  /** On a socket of another make, header and body are two receives: one message receive at a time. */
  private readonly receiving = Semaphore.makeUnsafe(1)

  constructor(socket: TcpSocket, framing: Framing, max: number | undefined) {
    super()
    this.socket = socket
    this.framing = framing
    this.max = framing._tag === "Prefixed" && max !== undefined ? Math.min(max, headerLimit(framing.size)) : max
    this.recvOptions = max === undefined ? {} : { max }
  }

  /** The framed chunks for one message of `parts`, or why it cannot be sent. */
  private frame(
    parts: ReadonlyArray<Uint8Array>,
    total: number
  ): ReadonlyArray<Uint8Array> | Refused {
    const address = connectionOf(this.socket)?.address
    const framing = this.framing
    const limit = framing._tag === "Prefixed" ? Math.min(this.max ?? Infinity, headerLimit(framing.size)) : this.max
    if (limit !== undefined && total > limit) {
      return tooLarge("send", `message of ${total} bytes longer than ${limit}`, address)
    }
    if (framing._tag === "Prefixed") return [header(framing.size, framing.endian, total), ...parts]
    if (containsDelimiter(parts, total, framing.delimiter)) {
      return TcpError.invalid("send", "the message contains the delimiter", address)
    }
    return [...parts, framing.delimiter]
  }

  send(message: Uint8Array, options?: Deadline.Options): Effect.Effect<void, TcpError.SendError | TcpError.MessageTooLarge> {
    if (!isBytes(message)) return invalid("expected a Uint8Array", this.socket, "send")
    return this.sendv([message], options)
  }

  sendv(
    parts: ReadonlyArray<Uint8Array>,
    options?: Deadline.Options
  ): Effect.Effect<void, TcpError.SendError | TcpError.MessageTooLarge> {
    const total = totalOf(parts)
    if (total === undefined) return invalid("expected an array of Uint8Array", this.socket, "send")
    const framed = this.frame(parts, total)
    return isRefused(framed) ? Effect.fail(framed) : this.socket.sendv(framed, options)
  }

  recv(options?: Deadline.Options): Effect.Effect<Uint8Array, TcpError.RecvUntilError> {
    const framing = this.framing
    const conn = connectionOf(this.socket)
    if (conn === undefined) {
      return framing._tag === "Delimited"
        ? this.socket.recvUntil(framing.delimiter, options === undefined ? this.recvOptions : { ...options, ...this.recvOptions })
        : this.receiving.withPermits(1)(this.recvPrefixed(framing.size, framing.endian, options))
    }
    // The library's own socket: the frame is found, or the header read, in place, in the receive's turn.
    const receive = framing._tag === "Delimited"
      ? (deadline: Deadline.Deadline) => conn.recvUntil(framing.delimiter, this.max ?? conn.slotSize, deadline)
      : (deadline: Deadline.Deadline) =>
        conn.recvPrefixed(
          framing.size,
          (bytes) => lengthOf(bytes, framing.size, framing.endian),
          Math.min(this.max ?? Number.MAX_SAFE_INTEGER, kMaxLength),
          deadline
        )
    // Built when it runs: one effect value may run more than once, each run its own receive.
    return options === undefined
      ? Effect.suspend(() => receive(Deadline.never))
      : Effect.flatMap(Deadline.resolve(options, "recv", conn.address), receive)
  }

  /** A socket of another make: header, then body, with its exact receives. */
  private recvPrefixed(
    size: 1 | 2 | 4 | 8,
    endian: "big" | "little",
    options: Deadline.Options | undefined
  ): Effect.Effect<Uint8Array, TcpError.RecvUntilError> {
    return Effect.flatMap(this.socket.recv(size, options), (bytes): Effect.Effect<Uint8Array, TcpError.RecvUntilError> => {
      const length = lengthOf(bytes, size, endian)
      const limit = Math.min(this.max ?? Number.MAX_SAFE_INTEGER, kMaxLength)
      if (length > limit) {
        const address = connectionOf(this.socket)?.address
        return Effect.fail(tooLarge("recv", `message of ${length} bytes longer than ${limit}`, address))
      }
      return this.socket.recv(length, options)
    })
  }

  get stream(): Stream.Stream<Uint8Array, TcpError.RecvUntilError> {
    const conn = connectionOf(this.socket)
    const framing = this.framing
    if (conn !== undefined && framing._tag === "Delimited") {
      // One wait per pull, then every frame already buffered behind it, in the same chunk.
      const max = this.max ?? conn.slotSize
      const pull = Effect.suspend(() => conn.recvUntil(framing.delimiter, max, Deadline.never)).pipe(
        Effect.map((first): Arr.NonEmptyReadonlyArray<Uint8Array> => {
          const batch: [Uint8Array, ...Array<Uint8Array>] = [first]
          conn.recvBuffered(framing.delimiter, max, STREAM_BATCH - 1, batch)
          return batch
        }),
        // A FIN between two messages ends the stream; one inside a message is an error.
        Effect.catchTag(
          "PeerClosed",
          (error): Effect.Effect<never, TcpError.PeerClosed | Cause.Done> =>
            error.bytes.length === 0 ? Cause.done() : Effect.fail(error)
        )
      )
      return Stream.fromPull(Effect.succeed(pull))
    }
    return Stream.unfold(undefined, () =>
      this.recv().pipe(
        Effect.map((message) => [message, undefined] as const),
        // A FIN between two messages ends the stream; one inside a message is an error.
        Effect.catchTag("PeerClosed", (error) => error.bytes.length === 0 ? Effect.succeed(undefined) : Effect.fail(error))
      ))
  }

  get sink(): Sink.Sink<void, Uint8Array, never, TcpError.SendError | TcpError.MessageTooLarge> {
    return Sink.forEachArray((messages) =>
      Effect.suspend((): Effect.Effect<void, TcpError.SendError | TcpError.MessageTooLarge> => {
        // Every message of the batch is checked before any is sent, then all go in one batch.
        const chunks: Array<Uint8Array> = []
        for (const message of messages) {
          if (!isBytes(message)) return invalid("expected a Uint8Array", this.socket, "send")
          const framed = this.frame([message], message.length)
          if (isRefused(framed)) return Effect.fail(framed)
          chunks.push(...framed)
        }
        return this.socket.sendv(chunks)
      })
    )
  }

  toJSON() {
    const framing = this.framing
    return {
      _id: "MessageSocket",
      framing: framing._tag === "Delimited"
        ? { delimiter: Array.from(framing.delimiter) }
        : { size: framing.size, endian: framing.endian },
      max: this.max,
      socket: this.socket
    }
  }

  pipe() {
    return pipeArguments(this, arguments)
  }
}
