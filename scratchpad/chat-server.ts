/**
 * A line-based chat server: every line a client sends goes to every other
 * client, prefixed with the sender's number.
 *
 *     node scratchpad/chat-server.ts [PORT]         # serve on 127.0.0.1:PORT (default 0: a free port) until Ctrl-C
 *     nc -C 127.0.0.1 PORT                          # in two other terminals, then type lines (-C: end them with CRLF)
 *     node scratchpad/chat-server.ts --demo [PORT]  # `npm run chat`: server + three scripted clients, then exit
 *
 * Each connection runs under `TcpListener.serve` in a scope of its own: a
 * reader fiber publishes the client's lines to a `PubSub`, a writer fiber
 * sends everyone else's lines back, and when either ends (the client
 * finished, reset, went idle, stopped reading or sent an overlong line) the
 * other is interrupted and `serve` closes the socket.
 *
 * Lines are CRLF-terminated messages (`TcpMessage.crlf`, libdill's
 * `crlf_attach`): a receive scans the bytes already in the socket's storage
 * slot for the CRLF, so there is no call per byte. A line longer than
 * `MAX_LINE` is `MessageTooLarge`: the client is told so and dropped, rather
 * than the server holding or skipping an unbounded line.
 *
 * The demo's whole run shares one 4-second deadline, so it ends by itself.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Option, PubSub, Ref } from "effect"
import type { Scope } from "effect"
import { Deadline, TcpClient, TcpError, TcpListener, TcpMessage, TcpNode, TcpSocket } from "../src/index.ts"

/** Longest line the server accepts from a client; a longer one gets the client dropped. */
const MAX_LINE = 1024
/** Room for the "[n] " the server puts before a relayed line. */
const PREFIX_ROOM = 32
/** Longest line the server sends, and a client accepts: a relayed line with its prefix. */
const MAX_RELAYED = MAX_LINE + PREFIX_ROOM
/** A client must finish each line within this time, or it is dropped. */
const IDLE_TIMEOUT = "5 minutes"
/** A client that does not take our bytes within this time is dropped. */
const SEND_TIMEOUT = "5 seconds"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A short, quoted rendering of a line for the terminal. */
const show = (text: string): string =>
  text.length > 60 ? `${JSON.stringify(`${text.slice(0, 24)}…`)} (${encoder.encode(text).length} bytes)` : JSON.stringify(text)

/**
 * The next line, or `None` when the peer finished between lines. A last
 * line the peer ended without its CRLF is returned as it is.
 */
const nextLine = (lines: TcpMessage.MessageSocket, options: Deadline.Options) =>
  lines.recv(options).pipe(
    Effect.map((bytes) => Option.some(decoder.decode(bytes))),
    Effect.catchTag("PeerClosed", (closed) =>
      Effect.succeed(closed.bytes.length === 0 ? Option.none() : Option.some(decoder.decode(closed.bytes))))
  )

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

    const chat = Effect.gen(function*() {
      // Two views of one socket: what a client may send is bounded by
      // MAX_LINE, what we send it is longer by the sender's prefix.
      const incoming = yield* TcpMessage.crlf(socket, { max: MAX_LINE })
      const outgoing = yield* TcpMessage.crlf(socket, { max: MAX_RELAYED })
      const say = (text: string) => outgoing.send(encoder.encode(text), { timeout: SEND_TIMEOUT })

      const reader = Effect.gen(function*() {
        while (true) {
          const deadline = yield* Deadline.after(IDLE_TIMEOUT)
          const line = yield* nextLine(incoming, { deadline })
          if (Option.isNone(line)) return `client ${id} left`
          yield* PubSub.publish(hub, { from: id, text: `[${id}] ${line.value}` })
        }
      })

      const writer = Effect.gen(function*() {
        while (true) {
          const message = yield* PubSub.take(subscription)
          if (message.from !== id) yield* say(message.text)
        }
      })

      yield* say(`* you are client ${id}`)
      yield* PubSub.publish(hub, { from: id, text: `* client ${id} joined` })
      return yield* Effect.raceFirst(reader, writer).pipe(
        // The overlong line stays unread in the slot: `serve`'s graceful
        // close discards it while the client reads why it was dropped.
        Effect.catchTag("MessageTooLarge", () =>
          Effect.gen(function*() {
            yield* Console.log(`server: client ${id} sent a line longer than ${MAX_LINE} bytes`)
            yield* say(`* line too long (max ${MAX_LINE} bytes): goodbye`)
            return `client ${id} dropped: line too long`
          }))
      )
    })

    const farewell = yield* chat.pipe(
      Effect.catchTags({
        ConnReset: (e) => Effect.as(Console.log(`server: client ${id} reset the connection (${e.errno})`), `client ${id} left`),
        TimedOut: (e) =>
          Effect.as(Console.log(`server: client ${id} idle or not reading (${e.errno})`), `client ${id} dropped: idle`),
        BrokenPipe: (e) => Effect.as(Console.log(`server: client ${id} went away (${e.errno})`), `client ${id} left`),
        MessageTooLarge: (e) => Effect.as(Console.log(`server: client ${id}: ${e.message}`), `client ${id} left`),
        Closed: (e) => Effect.as(Console.log(`server: client ${id}: ${e.message}`), `client ${id} left`),
        InvalidArgument: (e) => Effect.as(Console.log(`server: client ${id}: ${e.message}`), `client ${id} left`),
        SystemError: (e) => Effect.as(Console.log(`server: client ${id}: ${e.errno} ${e.message}`), `client ${id} left`)
      })
    )
    yield* Console.log(`server: ${farewell}`)
    yield* PubSub.publish(hub, { from: id, text: `* ${farewell}` })
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
    // The client's own bound on sending is the protocol's, not the
    // server's: the demo sends an overlong line on purpose.
    const lines = yield* TcpMessage.crlf(socket, { max: 4 * MAX_LINE })

    const hear = Effect.gen(function*() {
      const line = yield* nextLine(lines, { deadline })
      yield* Console.log(`${name} <- ${Option.match(line, { onNone: () => "(end of stream)", onSome: show })}`)
      return line
    })
    const say = (text: string) =>
      Effect.andThen(lines.send(encoder.encode(text), { deadline }), Console.log(`${name} -> ${show(text)}`))
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
    /** Read until the server's end (it dropped us), close. */
    const dropped = Effect.gen(function*() {
      for (let i = 0; i < 16; i++) {
        if (Option.isNone(yield* hear)) break
      }
      yield* socket.close({ deadline })
      yield* Console.log(`${name}: closed`)
    })

    yield* hear // the welcome: from here on this client misses nothing
    return { hear, say, leave, dropped } as const
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
    yield* alice.hear

    const carol = yield* client("carol", address, deadline)
    yield* alice.hear // * client 3 joined
    yield* bob.hear
    yield* carol.say("x".repeat(1500))
    yield* carol.dropped // * line too long ..., then the end of the stream
    yield* alice.hear // * client 3 dropped: line too long
    yield* bob.hear

    yield* bob.leave
    yield* alice.hear // * client 2 left
    yield* alice.leave
  })

const serveForever = (port: string) =>
  Effect.gen(function*() {
    const listener = yield* TcpListener.listen(`127.0.0.1:${port}`)
    yield* Console.log(
      `chat server on 127.0.0.1:${listener.port} (try: nc -C 127.0.0.1 ${listener.port}); Ctrl-C stops it`
    )
    yield* chatServer(listener)
  })

const args = process.argv.slice(2)
// A bad port is the listener's InvalidArgument, reported by runMain.
const port = args.find((a) => a !== "--demo") ?? "0"

const main: Effect.Effect<void, TcpError.TcpError> = (args.includes("--demo") ? demo(port) : serveForever(port)).pipe(
  Effect.scoped,
  Effect.provide(TcpNode.layer)
)

NodeRuntime.runMain(main)
