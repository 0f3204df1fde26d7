/**
 * A line-based chat server: every line a client sends goes to every other
 * client, prefixed with the sender's number.
 *
 *     node scratchpad/chat-server.ts [PORT]         # serve on 127.0.0.1:PORT (default 0: a free port) until Ctrl-C
 *     nc 127.0.0.1 PORT                             # in two other terminals, then type lines
 *     node scratchpad/chat-server.ts --demo [PORT]  # `npm run chat`: server + two scripted clients, then exit
 *
 * Each connection runs under `TcpListener.serve` in a scope of its own: a
 * reader fiber publishes the client's lines to a `PubSub`, a writer fiber
 * sends everyone else's lines back, and when either ends (the client
 * finished, reset, went idle or stopped reading) the other is interrupted and
 * `serve` closes the socket.
 *
 * Why lines are read one byte at a time: effect-tcp's receives are exact, like
 * libdill's `brecv` (`recv(n)` returns exactly `n` bytes or fails), so there is
 * no "read whatever arrived" call to scan for a newline in. A line protocol
 * either reads byte by byte into a bounded buffer, as here, or frames its
 * messages with a length prefix (see `redis-client.ts` for RESP, which has
 * both). Byte-at-a-time reads cost one call per byte but no system call: the
 * bytes come out of the socket's storage slot, which Node filled in bulk.
 *
 * The demo's whole run shares one 4-second deadline, so it ends by itself.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Option, PubSub, Ref } from "effect"
import type { Scope } from "effect"
import { Deadline, TcpClient, TcpError, TcpListener, TcpNode, TcpSocket } from "../src/index.ts"

/** Longest line the server keeps; the rest of a longer line is dropped. */
const MAX_LINE = 1024
/** Longest line a client keeps: the server's lines plus their "[n] " prefix. */
const MAX_CLIENT_LINE = MAX_LINE + 32
/** A client must finish each line within this time, or it is dropped. */
const IDLE_TIMEOUT = "5 minutes"
/** A client that does not take our bytes within this time is dropped. */
const SEND_TIMEOUT = "5 seconds"
const NEWLINE = 0x0a

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** One line as read from the peer: its text, and whether it was cut at the bound. */
interface Line {
  readonly text: string
  readonly bytes: number
  readonly cut: boolean
}

/**
 * Reads one line (up to `\n`, without it and without a trailing `\r`), keeping
 * at most `max` bytes: the rest of a longer line is read and dropped. `None`
 * when the peer finished before the first byte of a line; a last line without
 * its `\n` is returned as it is. The loop ends at the newline, at the peer's
 * end, or at the deadline (`TimedOut`).
 */
const readLine = (
  socket: TcpSocket.TcpSocket,
  max: number,
  options: Deadline.Options
): Effect.Effect<Option.Option<Line>, Exclude<TcpError.RecvError, TcpError.PeerClosed>> =>
  Effect.gen(function*() {
    const line = new Uint8Array(max)
    const byte = new Uint8Array(1)
    let length = 0
    let total = 0
    const result = (): Option.Option<Line> => {
      const kept = length > 0 && line[length - 1] === 0x0d ? length - 1 : length
      return Option.some({ text: decoder.decode(line.subarray(0, kept)), bytes: total, cut: total > length })
    }
    while (true) {
      const more = yield* socket.recvInto(byte, options).pipe(
        Effect.as(true),
        Effect.catchTag("PeerClosed", () => Effect.succeed(false))
      )
      if (!more) return total === 0 ? Option.none() : result()
      if (byte[0] === NEWLINE) return result()
      if (length < max) line.set(byte, length++)
      total++
    }
  })

const sendLine = (socket: TcpSocket.TcpSocket, text: string, options: Deadline.Options) =>
  socket.send(encoder.encode(`${text}\n`), options)

/** A short, quoted rendering of a line for the terminal. */
const show = (line: Line): string =>
  line.text.length > 40
    ? `${JSON.stringify(`${line.text.slice(0, 24)}…`)} (${line.bytes} bytes${line.cut ? ", cut" : ""})`
    : JSON.stringify(line.text)

// ---------------------------------------------------------------------------
// The server

/** What goes through the hub: a line for everyone but its sender. */
interface Message {
  readonly from: number
  readonly text: string
}

/** One client's session: welcome, then relay both ways until either side ends. */
const session = (hub: PubSub.PubSub<Message>, ids: Ref.Ref<number>) =>
  Effect.fn("chat.session")(function*(socket: TcpSocket.TcpSocket): Effect.fn.Return<void, never, Scope.Scope> {
    const id = yield* Ref.updateAndGet(ids, (n) => n + 1)
    const peer = socket.remoteAddress === undefined ? "?" : String(socket.remoteAddress)
    // Subscribe before the welcome, so that a client that waits for its
    // welcome misses nothing said after it.
    const subscription = yield* PubSub.subscribe(hub)
    yield* Console.log(`server: client ${id} connected from ${peer}`)

    const reader = Effect.gen(function*() {
      while (true) {
        const deadline = yield* Deadline.after(IDLE_TIMEOUT)
        const line = yield* readLine(socket, MAX_LINE, { deadline })
        if (Option.isNone(line)) return
        if (line.value.cut) {
          yield* Console.log(`server: client ${id} sent a ${line.value.bytes}-byte line, cut to ${MAX_LINE}`)
        }
        yield* PubSub.publish(hub, { from: id, text: `[${id}] ${line.value.text}` })
      }
    })

    const writer = Effect.gen(function*() {
      while (true) {
        const message = yield* PubSub.take(subscription)
        if (message.from !== id) yield* sendLine(socket, message.text, { timeout: SEND_TIMEOUT })
      }
    })

    yield* sendLine(socket, `* you are client ${id}`, { timeout: SEND_TIMEOUT }).pipe(
      Effect.andThen(PubSub.publish(hub, { from: id, text: `* client ${id} joined` })),
      Effect.andThen(Effect.raceFirst(reader, writer)),
      Effect.andThen(Console.log(`server: client ${id} left`)),
      Effect.catchTags({
        ConnReset: (e) => Console.log(`server: client ${id} reset the connection (${e.errno})`),
        TimedOut: (e) => Console.log(`server: client ${id} idle or not reading, dropped (${e.errno})`),
        BrokenPipe: (e) => Console.log(`server: client ${id} went away (${e.errno})`),
        Closed: (e) => Console.log(`server: client ${id}: ${e.message}`),
        InvalidArgument: (e) => Console.log(`server: client ${id}: ${e.message}`),
        SystemError: (e) => Console.log(`server: client ${id}: ${e.errno} ${e.message}`)
      }),
      Effect.andThen(PubSub.publish(hub, { from: id, text: `* client ${id} left` }))
    )
  })

/** Serves chat on `listener` until interrupted, at most 64 clients at a time. */
const chatServer = (listener: TcpListener.TcpListener) =>
  Effect.gen(function*() {
    // Sliding: a client that falls 256 lines behind loses the oldest ones
    // instead of stalling everyone else.
    const hub = yield* PubSub.sliding<Message>(256)
    const ids = yield* Ref.make(0)
    yield* listener.pipe(TcpListener.serve(session(hub, ids), { concurrency: 64 }))
  })

// ---------------------------------------------------------------------------
// The demo's clients

/** A scripted chat client: every call shares the demo's deadline. */
const client = (name: string, address: string, deadline: Deadline.Deadline) =>
  Effect.gen(function*() {
    const socket = yield* TcpClient.connect(address, { deadline })
    yield* Console.log(`${name}: connected to ${address}`)

    const hear = Effect.gen(function*() {
      const line = yield* readLine(socket, MAX_CLIENT_LINE, { deadline })
      yield* Console.log(`${name} <- ${Option.match(line, { onNone: () => "(end of stream)", onSome: show })}`)
      return line
    })
    const say = (text: string) =>
      Effect.andThen(
        sendLine(socket, text, { deadline }),
        Console.log(`${name} -> ${show({ text, bytes: encoder.encode(text).length, cut: false })}`)
      )
    /** Half-close, read what is left until the server's end, close. */
    const leave = Effect.gen(function*() {
      yield* socket.done({ deadline })
      yield* Console.log(`${name}: done sending`)
      for (let i = 0; i < 16; i++) {
        if (Option.isNone(yield* hear)) break
      }
      yield* socket.close({ deadline })
      yield* Console.log(`${name}: closed`)
    })

    yield* hear // the welcome: from here on this client misses nothing
    return { hear, say, leave } as const
  })

const demo = (port: string) =>
  Effect.gen(function*() {
    const listener = yield* TcpListener.listen(`127.0.0.1:${port}`)
    const address = `127.0.0.1:${listener.port}`
    yield* Console.log(`server: listening on ${address}`)
    yield* Effect.forkScoped(chatServer(listener))

    const deadline = yield* Deadline.after("4 seconds")
    const alice = yield* client("alice", address, deadline)
    const bob = yield* client("bob", address, deadline)
    yield* alice.hear // * client 2 joined
    yield* alice.say("hello bob")
    yield* bob.hear
    yield* bob.say("hi alice")
    yield* bob.say("x".repeat(1500))
    yield* alice.hear
    yield* alice.hear
    yield* bob.leave
    yield* alice.hear // * client 2 left
    yield* alice.leave
  })

const serveForever = (port: string) =>
  Effect.gen(function*() {
    const listener = yield* TcpListener.listen(`127.0.0.1:${port}`)
    yield* Console.log(`chat server on 127.0.0.1:${listener.port} (try: nc 127.0.0.1 ${listener.port}); Ctrl-C stops it`)
    yield* chatServer(listener)
  })

const args = process.argv.slice(2)
// A bad port is the listener's InvalidArgument, reported by runMain.
const port = args.find((a) => a !== "--demo") ?? "0"

const main = (args.includes("--demo") ? demo(port) : serveForever(port)).pipe(
  Effect.scoped,
  Effect.provide(TcpNode.layer)
)

NodeRuntime.runMain(main)
