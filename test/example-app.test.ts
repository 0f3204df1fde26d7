/**
 * An application tested with `TcpTest`: every branch of its error handling,
 * deterministically, without a socket or a real timer.
 *
 * The application (`fetchGreeting` below) is written against the public API
 * only, and needs `TcpClient.TcpClient`. In production it is provided by
 * `TcpNode.layer`; its tests provide `TcpTest.layer` instead, and the
 * application's code does not change:
 *
 * ```ts
 * // main.ts
 * fetchGreeting("10.0.0.5:7000", "Ada").pipe(Effect.provide(TcpNode.layer), NodeRuntime.runMain)
 *
 * // greeter.test.ts
 * it.effect("greets", () =>
 *   Effect.gen(function*() {
 *     const server = yield* TcpTest.listen("10.0.0.5:7000")   // the test plays the server
 *     const app = yield* Effect.forkChild(fetchGreeting("10.0.0.5:7000", "Ada"))
 *     const peer = yield* server.accept()
 *     // ... script the peer: recv, send, end, reset, failNext ...
 *     assert.deepStrictEqual(yield* Fiber.join(app), { text: "Hello, Ada!", close: "clean" })
 *   }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))
 * ```
 *
 * Each call of the application handles its errors with one exhaustive
 * `Effect.catchTags`: connect (13 tags), send (6), recv (6) and close (5).
 * The table at the bottom drives each of those 30 branches, plus the happy
 * path, in its own test. Timeouts run on `TestClock`: `TestClock.adjust`
 * moves time, nothing sleeps.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Result, Schema } from "effect"
import type { Scope } from "effect"
import { TestClock } from "effect/testing"
import { TcpClient, TcpError, TcpStorage, TcpTest } from "../src/index.ts"
import type { TcpSocket } from "../src/index.ts"

// =====================================================================
// The application: a client for a tiny greeting protocol.
//   request: "HELLO <name>\n"
//   reply:   2-byte big-endian length, then that many bytes of UTF-8
// It imports nothing but the library's public API.
// =====================================================================

/** Why no greeting came back. */
class GreetingFailed extends Schema.TaggedError<GreetingFailed>()("GreetingFailed", {
  stage: Schema.Literals(["connect", "send", "recv"]),
  reason: Schema.Literals([
    "unavailable",
    "unreachable",
    "timeout",
    "overloaded",
    "misconfigured",
    "forbidden",
    "dropped",
    "truncated",
    "bug",
    "unexpected"
  ]),
  retryable: Schema.Boolean,
  detail: Schema.String
}) {}

type Stage = GreetingFailed["stage"]
type Reason = GreetingFailed["reason"]

/** How the connection ended once the greeting was in: it is never lost to a failed close. */
type CloseOutcome = "clean" | "reset" | "linger-timeout" | "invalid" | "already-closed" | "unexpected"

interface Greeting {
  readonly text: string
  readonly close: CloseOutcome
}

const failed = (stage: Stage, reason: Reason, retryable: boolean) => (error: TcpError.TcpError) =>
  Effect.fail(new GreetingFailed({ stage, reason, retryable, detail: error.message }))

const connectTo = (address: string): Effect.Effect<TcpSocket.TcpSocket, GreetingFailed, TcpClient.TcpClient | Scope.Scope> =>
  TcpClient.connect(address, { timeout: "2 seconds" }).pipe(
    Effect.catchTags({
      ConnRefused: failed("connect", "unavailable", true),
      ConnReset: failed("connect", "unavailable", true),
      TimedOut: failed("connect", "timeout", true),
      HostUnreach: failed("connect", "unreachable", true),
      NetUnreach: failed("connect", "unreachable", true),
      NetDown: failed("connect", "unreachable", true),
      TooManyOpenFiles: failed("connect", "overloaded", true),
      SystemFileLimit: failed("connect", "overloaded", true),
      OutOfMemory: failed("connect", "overloaded", true),
      InvalidArgument: failed("connect", "misconfigured", false),
      AddrNotAvail: failed("connect", "misconfigured", false),
      AccessDenied: failed("connect", "forbidden", false),
      SystemError: failed("connect", "unexpected", false)
    })
  )

const sendAll = (socket: TcpSocket.TcpSocket, bytes: Uint8Array): Effect.Effect<void, GreetingFailed> =>
  socket.send(bytes, { timeout: "2 seconds" }).pipe(
    Effect.catchTags({
      ConnReset: failed("send", "dropped", true),
      BrokenPipe: failed("send", "dropped", true),
      TimedOut: failed("send", "timeout", true),
      InvalidArgument: failed("send", "bug", false),
      Closed: failed("send", "bug", false),
      SystemError: failed("send", "unexpected", false)
    })
  )

const readExactly = (socket: TcpSocket.TcpSocket, n: number): Effect.Effect<Uint8Array, GreetingFailed> =>
  socket.recv(n, { timeout: "2 seconds" }).pipe(
    Effect.catchTags({
      ConnReset: failed("recv", "dropped", true),
      TimedOut: failed("recv", "timeout", true),
      PeerClosed: (e) =>
        Effect.fail(
          new GreetingFailed({
            stage: "recv",
            reason: "truncated",
            retryable: true,
            detail: `got ${e.bytes.length} of ${n} bytes`
          })
        ),
      InvalidArgument: failed("recv", "bug", false),
      Closed: failed("recv", "bug", false),
      SystemError: failed("recv", "unexpected", false)
    })
  )

const closeGracefully = (socket: TcpSocket.TcpSocket): Effect.Effect<CloseOutcome> =>
  socket.close().pipe(
    Effect.as<CloseOutcome>("clean"),
    Effect.catchTags({
      ConnReset: () => Effect.succeed<CloseOutcome>("reset"),
      TimedOut: () => Effect.succeed<CloseOutcome>("linger-timeout"),
      InvalidArgument: () => Effect.succeed<CloseOutcome>("invalid"),
      Closed: () => Effect.succeed<CloseOutcome>("already-closed"),
      SystemError: () => Effect.succeed<CloseOutcome>("unexpected")
    })
  )

/** Asks the server at `address` to greet `name`. */
const fetchGreeting = Effect.fn("Greeter.fetchGreeting")(
  function*(address: string, name: string): Effect.fn.Return<Greeting, GreetingFailed, TcpClient.TcpClient> {
    return yield* Effect.scoped(Effect.gen(function*() {
      const socket = yield* connectTo(address)
      yield* sendAll(socket, new TextEncoder().encode(`HELLO ${name}\n`))
      const header = yield* readExactly(socket, 2)
      const length = new DataView(header.buffer, header.byteOffset, 2).getUint16(0)
      const body = yield* readExactly(socket, length)
      const close = yield* closeGracefully(socket)
      return { text: new TextDecoder().decode(body), close }
    }))
  }
)

// =====================================================================
// The tests
// =====================================================================

const ADDRESS = "10.0.0.5:7000"
const REQUEST = "HELLO Ada\n"

/** A reply frame: length header, then the text (the header may claim more than is sent). */
const frame = (text: string, claimed?: number): Uint8Array => {
  const body = new TextEncoder().encode(text)
  const out = new Uint8Array(2 + body.length)
  new DataView(out.buffer).setUint16(0, claimed ?? body.length)
  out.set(body, 2)
  return out
}

/** Errors a test injects carry a recognisable message. */
const injected = <E>(Make: new(fields: TcpError.ErrorFields) => E, errno: string, syscall: string): E =>
  TcpError.make(Make, errno, syscall, ADDRESS, `injected ${errno}`)

type Env = TcpTest.TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage | Scope.Scope

/** What a case does around the application. */
interface Case {
  readonly stage: Stage | "close" | "none"
  readonly tag: string
  /** Where the application connects (default `ADDRESS`). */
  readonly address?: string
  readonly listen?: TcpTest.ListenOptions
  readonly layer?: Layer.Layer<TcpTest.TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage, TcpError.InvalidArgument>
  /** Runs before the application starts. */
  readonly arrange?: (server: TcpTest.Listener) => Effect.Effect<void, unknown, Env>
  /** Plays the server while the application runs. */
  readonly peer: (server: TcpTest.Listener) => Effect.Effect<void, unknown, Env>
  readonly expect:
    | { readonly greeting: Greeting }
    | { readonly failed: { readonly stage: Stage; readonly reason: Reason; readonly retryable: boolean }; readonly detail?: string }
}

// -------------------------------------------------------- peer scripts

/** Never answers: the application's timeout (2 s) passes. */
const silence = () => TestClock.adjust("2 seconds")

/** Accepts, reads the request, and does nothing more. */
const acceptRequest = (server: TcpTest.Listener) =>
  Effect.gen(function*() {
    const peer = yield* server.accept()
    assert.strictEqual(new TextDecoder().decode(yield* peer.recv(REQUEST.length)), REQUEST)
    return peer
  })

/** Answers the request, then waits for the application to finish sending (its close). */
const answer = (server: TcpTest.Listener) =>
  Effect.gen(function*() {
    const peer = yield* acceptRequest(server)
    yield* peer.send(frame("Hello, Ada!"))
    assert.strictEqual((yield* peer.recvAll()).length, 0)
    return peer
  })

/** The well-behaved server: answer, then FIN. */
const serve = (server: TcpTest.Listener) => Effect.flatMap(answer(server), (peer) => peer.end)

const acceptOnly = (server: TcpTest.Listener) => Effect.asVoid(server.accept())

const greeted = (close: CloseOutcome) => ({ greeting: { text: "Hello, Ada!", close } })

const connectFails = (tag: string, error: TcpError.ConnectError, reason: Reason, retryable: boolean): Case => ({
  stage: "connect",
  tag,
  arrange: () => TcpTest.failConnect(ADDRESS, error, { times: 1 }),
  peer: () => Effect.void,
  expect: { failed: { stage: "connect", reason, retryable }, detail: error.message }
})

const sendFails = (tag: string, error: TcpError.SendError, reason: Reason, retryable: boolean): Case => ({
  stage: "send",
  tag,
  arrange: (server) => server.failNext("send", error),
  peer: acceptOnly,
  expect: { failed: { stage: "send", reason, retryable }, detail: error.message }
})

const recvFails = (tag: string, error: TcpError.RecvError, reason: Reason, retryable: boolean): Case => ({
  stage: "recv",
  tag,
  arrange: (server) => server.failNext("recv", error),
  peer: (server) => Effect.asVoid(acceptRequest(server)),
  expect: { failed: { stage: "recv", reason, retryable }, detail: error.message }
})

const closeFails = (tag: string, error: TcpError.CloseError, outcome: CloseOutcome): Case => ({
  stage: "close",
  tag,
  arrange: (server) => server.failNext("close", error),
  peer: serve,
  expect: greeted(outcome)
})

// -------------------------------------------------------------- the table

const cases: ReadonlyArray<Case> = [
  { stage: "none", tag: "greeting", peer: serve, expect: greeted("clean") },

  // connect: 13 branches. The first four come about the way they would in production.
  {
    stage: "connect",
    tag: "ConnRefused",
    address: "10.0.0.5:7999", // nobody listens there
    peer: () => Effect.void,
    expect: { failed: { stage: "connect", reason: "unavailable", retryable: true } }
  },
  {
    stage: "connect",
    tag: "TimedOut",
    peer: silence, // the listener never accepts
    expect: { failed: { stage: "connect", reason: "timeout", retryable: true } }
  },
  {
    stage: "connect",
    tag: "InvalidArgument",
    address: "10.0.0.5:0", // a misconfigured port
    peer: () => Effect.void,
    expect: { failed: { stage: "connect", reason: "misconfigured", retryable: false } }
  },
  {
    stage: "connect",
    tag: "OutOfMemory",
    layer: TcpTest.layerWith({ slots: 1, onExhausted: "fail" }),
    arrange: () => Effect.asVoid(TcpStorage.acquire()), // someone else holds the only slot
    peer: () => Effect.void,
    expect: { failed: { stage: "connect", reason: "overloaded", retryable: true } }
  },
  connectFails("ConnReset", injected(TcpError.ConnReset, "ECONNRESET", "connect"), "unavailable", true),
  connectFails("HostUnreach", injected(TcpError.HostUnreach, "EHOSTUNREACH", "connect"), "unreachable", true),
  connectFails("NetUnreach", injected(TcpError.NetUnreach, "ENETUNREACH", "connect"), "unreachable", true),
  connectFails("NetDown", injected(TcpError.NetDown, "ENETDOWN", "connect"), "unreachable", true),
  connectFails("TooManyOpenFiles", injected(TcpError.TooManyOpenFiles, "EMFILE", "connect"), "overloaded", true),
  connectFails("SystemFileLimit", injected(TcpError.SystemFileLimit, "ENFILE", "connect"), "overloaded", true),
  connectFails("AddrNotAvail", injected(TcpError.AddrNotAvail, "EADDRNOTAVAIL", "connect"), "misconfigured", false),
  connectFails("AccessDenied", injected(TcpError.AccessDenied, "EACCES", "connect"), "forbidden", false),
  connectFails("SystemError", injected(TcpError.SystemError, "EPROTO", "connect"), "unexpected", false),

  // send: 6 branches. A one-byte window makes the request wait for the peer to read it.
  {
    stage: "send",
    tag: "ConnReset",
    listen: { window: 1 },
    peer: (server) => Effect.flatMap(server.accept(), (peer) => peer.reset),
    expect: { failed: { stage: "send", reason: "dropped", retryable: true } }
  },
  {
    stage: "send",
    tag: "TimedOut",
    listen: { window: 1 },
    peer: (server) => Effect.andThen(acceptOnly(server), silence()), // never reads
    expect: { failed: { stage: "send", reason: "timeout", retryable: true } }
  },
  sendFails("BrokenPipe", injected(TcpError.BrokenPipe, "EPIPE", "send"), "dropped", true),
  sendFails("InvalidArgument", injected(TcpError.InvalidArgument, "EINVAL", "send"), "bug", false),
  sendFails("Closed", injected(TcpError.Closed, "EBADF", "send"), "bug", false),
  sendFails("SystemError", injected(TcpError.SystemError, "EIO", "send"), "unexpected", false),

  // recv: 6 branches.
  {
    stage: "recv",
    tag: "ConnReset",
    peer: (server) => Effect.flatMap(acceptRequest(server), (peer) => peer.reset),
    expect: { failed: { stage: "recv", reason: "dropped", retryable: true } }
  },
  {
    stage: "recv",
    tag: "TimedOut",
    peer: (server) => Effect.andThen(acceptRequest(server), silence()),
    expect: { failed: { stage: "recv", reason: "timeout", retryable: true } }
  },
  {
    stage: "recv",
    tag: "PeerClosed",
    peer: (server) =>
      Effect.flatMap(acceptRequest(server), (peer) =>
        Effect.andThen(peer.send(frame("Hello", 20)), peer.end)), // promises 20 bytes, sends 5
    expect: { failed: { stage: "recv", reason: "truncated", retryable: true }, detail: "got 5 of 20 bytes" }
  },
  recvFails("InvalidArgument", injected(TcpError.InvalidArgument, "EINVAL", "recv"), "bug", false),
  recvFails("Closed", injected(TcpError.Closed, "EBADF", "recv"), "bug", false),
  recvFails("SystemError", injected(TcpError.SystemError, "EIO", "recv"), "unexpected", false),

  // close: 5 branches; the greeting is kept whatever the close says.
  {
    stage: "close",
    tag: "ConnReset",
    peer: (server) => Effect.flatMap(answer(server), (peer) => peer.reset),
    expect: greeted("reset")
  },
  {
    stage: "close",
    tag: "TimedOut",
    peer: (server) => Effect.andThen(answer(server), TestClock.adjust("1 second")), // no FIN within closeTimeout
    expect: greeted("linger-timeout")
  },
  closeFails("InvalidArgument", injected(TcpError.InvalidArgument, "EINVAL", "close"), "invalid"),
  closeFails("Closed", injected(TcpError.Closed, "EBADF", "close"), "already-closed"),
  closeFails("SystemError", injected(TcpError.SystemError, "EIO", "close"), "unexpected")
]

describe("fetchGreeting on TcpTest", () => {
  it.effect.each(cases)("$stage: $tag", (c) =>
    Effect.gen(function*() {
      const server = yield* TcpTest.listen(ADDRESS, c.listen)
      if (c.arrange !== undefined) yield* c.arrange(server)
      const app = yield* Effect.forkChild(Effect.result(fetchGreeting(c.address ?? ADDRESS, "Ada")))
      yield* c.peer(server)
      const outcome = yield* Fiber.join(app)

      if ("greeting" in c.expect) {
        assert.isTrue(Result.isSuccess(outcome), `expected a greeting, got ${String(outcome)}`)
        if (Result.isSuccess(outcome)) assert.deepStrictEqual(outcome.success, c.expect.greeting)
      } else {
        assert.isTrue(Result.isFailure(outcome), "expected a failure")
        if (Result.isFailure(outcome)) {
          const { detail, reason, retryable, stage } = outcome.failure
          assert.deepStrictEqual({ stage, reason, retryable }, c.expect.failed)
          if (c.expect.detail !== undefined) assert.strictEqual(detail, c.expect.detail)
        }
      }
      // Whatever happened, the application left no socket behind.
      assert.strictEqual(yield* TcpTest.openSockets, 0)
    }).pipe(Effect.scoped, Effect.provide(c.layer ?? TcpTest.layer)))

  it("covers every tag of every call", () => {
    const covered = (stage: string) => new Set(cases.filter((c) => c.stage === stage).map((c) => c.tag))
    assert.deepStrictEqual(covered("connect"), new Set(TcpError.connectTags))
    assert.deepStrictEqual(covered("send"), new Set(TcpError.sendTags))
    assert.deepStrictEqual(covered("recv"), new Set(TcpError.recvTags))
    assert.deepStrictEqual(covered("close"), new Set(TcpError.closeTags))
  })
})
