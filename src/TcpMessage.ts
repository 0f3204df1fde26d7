/**
 * libdill's message protocols over a connected socket: `crlf` (a message
 * per line ending in CRLF), `suffix` (a message per delimiter) and `prefix`
 * (a length header before each message). Each gives a `MessageSocket` whose
 * `send` and `recv` move whole messages (libdill's `msend` / `mrecv`);
 * exact receives on the socket beneath continue where the messages stopped
 * (libdill's `*_detach`).
 *
 * @since 0.1.0
 */
import type { Effect, Inspectable, Sink, Stream } from "effect"
import type { Pipeable } from "effect/Pipeable"
import type * as Deadline from "./Deadline.ts"
import * as internal from "./internal/message.ts"
import type * as TcpError from "./TcpError.ts"
import type { TcpSocket } from "./TcpSocket.ts"

/**
 * @since 0.1.0
 */
export const TypeId: "~effect-tcp/MessageSocket" = internal.TypeId

/**
 * Whole messages over a `TcpSocket`. Every method returns an `Effect` and
 * never throws. A message is sent with its delimiter or header in one
 * `sendv`, so concurrent senders never interleave; receives take turns.
 *
 * Limits: `max` (default: the socket's storage slot size) bounds every
 * message sent and received, and a prefix header bounds it too (size 1 →
 * 255, 2 → 65,535, 4 → 2^32 − 1, 8 → `Number.MAX_SAFE_INTEGER`). A longer
 * message is `MessageTooLarge`; a delimited one that contains its delimiter
 * is `InvalidArgument`; either way nothing is sent.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpClient, TcpMessage } from "effect-tcp"
 * const ping = Effect.gen(function*() {
 *   const socket = yield* TcpClient.connect("127.0.0.1:6379", { timeout: "1 second" })
 *   const lines = yield* TcpMessage.crlf(socket, { max: 4096 })
 *   yield* lines.send(new TextEncoder().encode("PING"))
 *   return new TextDecoder().decode(yield* lines.recv({ timeout: "1 second" })) // "+PONG"
 * }).pipe(Effect.scoped)
 * ```
 * @since 0.1.0
 */
export interface MessageSocket extends Pipeable, Inspectable.Inspectable {
  readonly [TypeId]: typeof TypeId
  /** libdill's `msend`: sends `message` framed, all of it or (on a bad or too long message) nothing. */
  send(message: Uint8Array, options?: Deadline.Options): Effect.Effect<void, TcpError.SendError | TcpError.MessageTooLarge>
  /** libdill's `msendl`: the parts, in order, make one message. */
  sendv(
    parts: ReadonlyArray<Uint8Array>,
    options?: Deadline.Options
  ): Effect.Effect<void, TcpError.SendError | TcpError.MessageTooLarge>
  /**
   * libdill's `mrecv`: the next message, without its delimiter or header.
   * `PeerClosed` carries what arrived of it (no bytes: the FIN came between
   * messages). Delimited messages are `socket.recvUntil`. A prefixed
   * message's header is read in place in the storage slot: a length past
   * `max` fails `MessageTooLarge` with nothing consumed (the application
   * may read the frame with `socket.recv`, or close). Either way a message
   * that fits in the slot and times out or is interrupted consumes
   * nothing; a longer one stopped halfway leaves the inbound direction
   * unusable (`ConnReset`), as for `recv`. On a `TcpSocket` of another
   * make, a prefixed message is two exact receives and a length past `max`
   * leaves the header consumed. Under `TcpTest`, errors injected into
   * `"recvUntil"` apply to every message receive.
   */
  recv(options?: Deadline.Options): Effect.Effect<Uint8Array, TcpError.RecvUntilError>
  /** The messages received, ending at a FIN between messages; a FIN inside one fails `PeerClosed`. */
  readonly stream: Stream.Stream<Uint8Array, TcpError.RecvUntilError>
  /** A sink sending each message it is given (each batch checked whole first, then sent in one `sendv`). */
  readonly sink: Sink.Sink<void, Uint8Array, never, TcpError.SendError | TcpError.MessageTooLarge>
  /** The socket beneath: exact receives and sends continue where the messages stopped. */
  readonly socket: TcpSocket
}

/**
 * Options for the message protocols: `max`, the longest message sent or
 * received (an integer ≥ 1; default: the socket's storage slot size).
 *
 * @example
 * ```ts
 * import type { TcpMessage } from "effect-tcp"
 * const options: TcpMessage.Options = { max: 8 * 1024 }
 * ```
 * @since 0.1.0
 */
export interface Options {
  readonly max?: number | undefined
}

/**
 * Options for `prefix`: the header's `size` in bytes (1, 2, 4 or 8; default
 * 4), its byte order (`endian`, default `"big"`), and `max`.
 *
 * @example
 * ```ts
 * import type { TcpMessage } from "effect-tcp"
 * const options: TcpMessage.PrefixOptions = { size: 2, endian: "little", max: 65_535 }
 * ```
 * @since 0.1.0
 */
export interface PrefixOptions extends Options {
  readonly size?: 1 | 2 | 4 | 8 | undefined
  readonly endian?: "big" | "little" | undefined
}

/**
 * libdill's `crlf_attach`: each message is a line ending in `\r\n` (not
 * part of the message). Fails `InvalidArgument` for a bad `max` or
 * something that is not a `TcpSocket`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpMessage } from "effect-tcp"
 * import type { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * const echoLine = Effect.gen(function*() {
 *   const lines = yield* TcpMessage.crlf(socket, { max: 1024 })
 *   yield* lines.send(yield* lines.recv())
 * })
 * ```
 * @since 0.1.0
 */
export const crlf = (socket: TcpSocket, options?: Options): Effect.Effect<MessageSocket, TcpError.InvalidArgument> =>
  internal.delimited(socket, "\r\n", options)

/**
 * libdill's `suffix_attach`: each message ends with `delimiter` (bytes, or
 * a string sent as UTF-8; not empty, not longer than the storage slot).
 *
 * @example
 * ```ts
 * import { TcpMessage } from "effect-tcp"
 * import type { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpMessage.suffix(socket, new Uint8Array([0]), { max: 64 * 1024 }) // NUL-terminated messages
 * ```
 * @since 0.1.0
 */
export const suffix = (
  socket: TcpSocket,
  delimiter: Uint8Array | string,
  options?: Options
): Effect.Effect<MessageSocket, TcpError.InvalidArgument> => internal.delimited(socket, delimiter, options)

/**
 * libdill's `prefix_attach`: each message follows a header holding its
 * length as an unsigned integer of `size` bytes in `endian` order (8-byte
 * lengths up to `Number.MAX_SAFE_INTEGER`).
 *
 * @example
 * ```ts
 * import { TcpMessage } from "effect-tcp"
 * import type { TcpSocket } from "effect-tcp"
 * declare const socket: TcpSocket.TcpSocket
 * TcpMessage.prefix(socket, { size: 4, endian: "big", max: 1024 * 1024 })
 * ```
 * @since 0.1.0
 */
export const prefix = (
  socket: TcpSocket,
  options?: PrefixOptions
): Effect.Effect<MessageSocket, TcpError.InvalidArgument> => internal.prefixed(socket, options)
