/**
 * The man page's example (tcp_connect_mem(3)), in effect-tcp:
 *
 *     ipaddr_remote(&addr, "www.example.org", 80, 0, -1);
 *     int s = tcp_connect(&addr, -1);
 *     bsend(s, "ABC", 3, -1);
 *     char buf[3];
 *     brecv(s, buf, sizeof(buf), -1);
 *     tcp_close(s);
 *
 * run against an embedded echo listener on 127.0.0.1 (or the `HOST:PORT`
 * given as the first argument), then a connect to a closed port whose
 * failure is handled with an exhaustive `Effect.catchTags`.
 *
 *     npm start
 *     npm start -- 127.0.0.1:6379
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { Deadline, TcpClient, TcpError, TcpListener, TcpNode, TcpSocket } from "../src/index.ts"

const text = new TextEncoder()
const show = (bytes: Uint8Array) => JSON.stringify(new TextDecoder().decode(bytes))

/** Echoes 3-byte messages back until the peer finishes (serve then closes the socket). */
const echo = (socket: TcpSocket.TcpSocket): Effect.Effect<void, TcpError.TcpError> =>
  socket.recv(3).pipe(
    Effect.flatMap((bytes) => socket.send(bytes)),
    Effect.forever,
    Effect.catchTag("PeerClosed", (closed) => socket.send(closed.bytes))
  )

/** An echo listener on 127.0.0.1, serving until the scope closes. */
const echoListener = Effect.gen(function*() {
  const listener = yield* TcpListener.listen("127.0.0.1:0")
  yield* Effect.forkScoped(listener.pipe(TcpListener.serve(echo)))
  return `127.0.0.1:${listener.port}`
})

/** The man page's exchange: connect, send "ABC", receive 3 bytes, close. */
const exchange = (address: string) =>
  Effect.gen(function*() {
    const deadline = yield* Deadline.after("5 seconds")
    yield* Console.log(`connect ${address}`)
    const socket = yield* TcpClient.connect(address, { deadline })
    yield* Console.log(`  connected: ${socket.localAddress ? String(socket.localAddress) : "?"} -> ${address}`)
    yield* socket.send(text.encode("ABC"), { deadline })
    yield* Console.log(`  sent "ABC"`)
    const reply = yield* socket.recv(3, { deadline })
    yield* Console.log(`  received ${show(reply)}`)
    yield* socket.close({ deadline })
    yield* Console.log(`  closed`)
  }).pipe(Effect.scoped)

/** A port nothing listens on: listen on port 0, note the port, stop listening. */
const closedPort = Effect.scoped(Effect.map(TcpListener.listen("127.0.0.1:0"), (l) => `127.0.0.1:${l.port}`))

/** Connects and reports the outcome, one branch per error the type allows. */
const probe = (address: string) =>
  TcpClient.connect(address, { timeout: "2 seconds" }).pipe(
    Effect.as("connected (unexpected)"),
    Effect.scoped,
    Effect.catchTags({
      ConnRefused: (e) => Effect.succeed(`ConnRefused, handled: ${e.message}`),
      TimedOut: (e) => Effect.succeed(`TimedOut, handled: ${e.message}`),
      ConnReset: (e) => Effect.succeed(`ConnReset: ${e.message}`),
      HostUnreach: (e) => Effect.succeed(`HostUnreach: ${e.message}`),
      NetUnreach: (e) => Effect.succeed(`NetUnreach: ${e.message}`),
      NetDown: (e) => Effect.succeed(`NetDown: ${e.message}`),
      InvalidArgument: (e) => Effect.succeed(`InvalidArgument: ${e.message}`),
      TooManyOpenFiles: (e) => Effect.succeed(`TooManyOpenFiles: ${e.message}`),
      SystemFileLimit: (e) => Effect.succeed(`SystemFileLimit: ${e.message}`),
      OutOfMemory: (e) => Effect.succeed(`OutOfMemory: ${e.message}`),
      AddrNotAvail: (e) => Effect.succeed(`AddrNotAvail: ${e.message}`),
      AccessDenied: (e) => Effect.succeed(`AccessDenied: ${e.message}`),
      SystemError: (e) => Effect.succeed(`SystemError ${e.errno}: ${e.message}`)
    })
  )

const main = Effect.gen(function*() {
  const given = process.argv[2]
  const address = given ?? (yield* echoListener)
  if (given === undefined) yield* Console.log(`embedded echo listener on ${address}`)
  yield* exchange(address)
  const closed = yield* closedPort
  yield* Console.log(`connect ${closed} (nothing listens there)`)
  yield* Console.log(`  ${yield* probe(closed)}`)
}).pipe(Effect.scoped, Effect.provide(TcpNode.layer))

NodeRuntime.runMain(main)
