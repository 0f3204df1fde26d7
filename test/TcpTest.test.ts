/**
 * The in-memory client honours the library's socket semantics: exact
 * receives, PeerClosed with the bytes that arrived, BrokenPipe after done,
 * Closed after close, ConnReset after a reset, injected errors reaching
 * exactly the next call of their kind, deadlines on TestClock, interruption.
 * No sockets, no real time: every test runs under TestClock.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import type { Layer, Scope } from "effect"
import { NetAddress } from "effect/net"
import { TestClock } from "effect/testing"
import { Deadline, TcpClient, TcpError, TcpSocket, TcpStorage, TcpTest } from "../src/index.ts"

// ---------------------------------------------------------------- fixtures

const ADDRESS = "127.0.0.1:7000"
const bytes = (text: string) => new TextEncoder().encode(text)
const text = (data: Uint8Array) => new TextDecoder().decode(data)

type Env = TcpTest.TcpTest | TcpClient.TcpClient | TcpStorage.TcpStorage | Scope.Scope

/** Runs `body` in its own scope on a fresh in-memory network. */
const run = <A, E, LE = never>(
  body: Effect.Effect<A, E, Env>,
  layer: Layer.Layer<Exclude<Env, Scope.Scope>, LE> = TcpTest.layer
): Effect.Effect<A, E | LE> => body.pipe(Effect.scoped, Effect.provide(layer))

/** The application's socket connected to a scripted peer. */
const pair = (options?: TcpTest.ListenOptions, connect?: TcpClient.ConnectOptions) =>
  Effect.gen(function*() {
    const server = yield* TcpTest.listen(ADDRESS, options)
    const connecting = yield* Effect.forkChild(TcpClient.connect(ADDRESS, connect))
    const peer = yield* server.accept()
    const socket = yield* Fiber.join(connecting)
    return { server, peer, socket }
  })

/** Whether a forked fiber is still running. */
const running = (fiber: Fiber.Fiber<unknown, unknown>) => fiber.pollUnsafe() === undefined

const failureOf = <A, E>(effect: Effect.Effect<A, E, Env>) => Effect.flip(effect)

const reset = (syscall: string) => TcpError.make(TcpError.ConnReset, "ECONNRESET", syscall, ADDRESS, "injected")

// ------------------------------------------------------------------- tests

describe("TcpTest", () => {
  describe("connect", () => {
    it.effect("fails with ConnRefused where nobody listens", () =>
      run(Effect.gen(function*() {
        const error = yield* failureOf(TcpClient.connect(ADDRESS))
        assert.strictEqual(error._tag, "ConnRefused")
        assert.strictEqual(error.errno, "ECONNREFUSED")
        assert.strictEqual(error.syscall, "connect")
        assert.strictEqual(error.address, ADDRESS)
      })))

    it.effect("waits for accept, and fails with TimedOut at its deadline on TestClock", () =>
      run(Effect.gen(function*() {
        const server = yield* TcpTest.listen(ADDRESS)
        const fiber = yield* Effect.forkChild(TcpClient.connect(ADDRESS, { timeout: "2 seconds" }))
        yield* TestClock.adjust("1999 millis")
        assert.isTrue(running(fiber))
        assert.strictEqual(yield* server.pending, 1)
        yield* TestClock.adjust("1 millis")
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* failureOf(Fiber.join(fiber))
        assert.strictEqual(error._tag, "TimedOut")
        // The connect that gave up is gone from the listener's queue.
        assert.strictEqual(yield* server.pending, 0)
        assert.strictEqual((yield* TcpStorage.stats).inUse, 0)
      })))

    it.effect("an absolute deadline, and the earlier of deadline and timeout, bound the handshake", () =>
      run(Effect.gen(function*() {
        yield* TcpTest.listen(ADDRESS)
        yield* TestClock.setTime(10_000)
        const fiber = yield* Effect.forkChild(TcpClient.connect(ADDRESS, { deadline: 10_500, timeout: "1 second" }))
        yield* TestClock.adjust("499 millis")
        assert.isTrue(running(fiber))
        yield* TestClock.adjust("1 millis")
        assert.strictEqual((yield* failureOf(Fiber.join(fiber)))._tag, "TimedOut")
      })))

    it.effect("deadline 0 and past deadlines fail with TimedOut at once, even with a backlog", () =>
      run(Effect.gen(function*() {
        yield* TcpTest.listen(ADDRESS, { backlog: 4 })
        yield* TestClock.setTime(5_000)
        assert.strictEqual((yield* failureOf(TcpClient.connect(ADDRESS, { deadline: 0 })))._tag, "TimedOut")
        assert.strictEqual((yield* failureOf(TcpClient.connect(ADDRESS, { deadline: 4_000 })))._tag, "TimedOut")
        assert.strictEqual((yield* failureOf(TcpClient.connect(ADDRESS, { timeout: 0 })))._tag, "TimedOut")
        // A handshake always waits, so even nobody listening is TimedOut with deadline 0.
        assert.strictEqual((yield* failureOf(TcpClient.connect("127.0.0.1:9", { deadline: 0 })))._tag, "TimedOut")
      })))

    it.effect("a backlog completes handshakes before accept; connects beyond it wait", () =>
      run(Effect.gen(function*() {
        const server = yield* TcpTest.listen(ADDRESS, { backlog: 1 })
        const first = yield* TcpClient.connect(ADDRESS)
        const second = yield* Effect.forkChild(TcpClient.connect(ADDRESS, { timeout: "1 second" }))
        yield* TestClock.adjust("500 millis")
        assert.isTrue(running(second))
        yield* first.send(bytes("one"))
        const peer1 = yield* server.accept()
        assert.strictEqual(text(yield* peer1.recv(3)), "one")
        // Accepting the first made room: the second completes.
        const socket2 = yield* Fiber.join(second)
        const peer2 = yield* server.accept({ deadline: 0 })
        yield* peer2.send("two")
        assert.strictEqual(text(yield* socket2.recv(3)), "two")
      })))

    it.effect("failConnect: the next `times` connects fail with the given error, in order, then it connects", () =>
      run(Effect.gen(function*() {
        const server = yield* TcpTest.listen(ADDRESS, { backlog: 1 })
        const unreachable = TcpError.make(TcpError.HostUnreach, "EHOSTUNREACH", "connect", ADDRESS, undefined)
        const refused = TcpError.make(TcpError.ConnRefused, "ECONNREFUSED", "connect", ADDRESS, undefined)
        yield* TcpTest.failConnect(ADDRESS, unreachable, { times: 2 })
        yield* TcpTest.failConnect(ADDRESS, refused, { times: 1 })
        assert.strictEqual(yield* failureOf(TcpClient.connect(ADDRESS)), unreachable)
        assert.strictEqual(yield* failureOf(TcpClient.connect(ADDRESS)), unreachable)
        assert.strictEqual(yield* failureOf(TcpClient.connect(ADDRESS)), refused)
        yield* TcpClient.connect(ADDRESS)
        assert.strictEqual(yield* server.pending, 1)
        assert.strictEqual((yield* TcpStorage.stats).inUse, 1)
      })))

    it.effect("failConnect without `times` fails every connect; addresses match after parsing", () =>
      run(Effect.gen(function*() {
        const down = TcpError.make(TcpError.NetDown, "ENETDOWN", "connect", "[::1]:80", undefined)
        yield* TcpTest.failConnect({ host: "::1", port: 80 }, down)
        for (let i = 0; i < 3; i++) {
          assert.strictEqual(yield* failureOf(TcpClient.connect("[::1]:80")), down)
        }
        yield* TcpTest.failConnect("DB.internal:5432", TcpError.timedOut("connect", "db.internal:5432"))
        assert.strictEqual((yield* failureOf(TcpClient.connect("db.internal:5432")))._tag, "TimedOut")
        const bad = yield* failureOf(TcpTest.failConnect(ADDRESS, down, { times: 0 }))
        assert.strictEqual(bad._tag, "InvalidArgument")
      })))

    it.effect("invalid input is InvalidArgument, never a throw", () =>
      run(Effect.gen(function*() {
        const cases: ReadonlyArray<Effect.Effect<TcpSocket.TcpSocket, TcpError.ConnectError, Env>> = [
          TcpClient.connect("127.0.0.1:0"),
          TcpClient.connect("not an address"),
          TcpClient.connect({ host: "127.0.0.1", port: 70000 }),
          TcpClient.connect(ADDRESS, { timeout: -5 }),
          TcpClient.connect(ADDRESS, { deadline: Number.NaN }),
          TcpClient.connect(ADDRESS, { closeTimeout: "Infinity" }),
          TcpClient.connect(ADDRESS, { noDelay: "yes" as unknown as boolean }),
          TcpClient.connect(ADDRESS, { family: "ipx" as unknown as "ipv4" }),
          TcpClient.connect(ADDRESS, { storage: 3 as unknown as TcpStorage.Slot }),
          TcpClient.fromFd(-1),
          TcpClient.fromFd(3)
        ]
        for (const connect of cases) {
          const error = yield* failureOf(connect)
          assert.strictEqual(error._tag, "InvalidArgument", error.message)
        }
      })))

    it.effect("a literal of the wrong family is AddrNotAvail", () =>
      run(Effect.gen(function*() {
        yield* TcpTest.listen(ADDRESS)
        const error = yield* failureOf(TcpClient.connect(ADDRESS, { family: "ipv6" }))
        assert.strictEqual(error._tag, "AddrNotAvail")
      })))

    it.effect("closing the listener refuses waiting connects and fails waiting accepts with Closed", () =>
      run(Effect.gen(function*() {
        const server = yield* TcpTest.listen(ADDRESS)
        const connecting = yield* Effect.forkChild(TcpClient.connect(ADDRESS))
        yield* TestClock.adjust("10 millis")
        yield* server.close
        assert.strictEqual((yield* failureOf(Fiber.join(connecting)))._tag, "ConnRefused")
        assert.strictEqual((yield* failureOf(server.accept()))._tag, "Closed")
        // The address is free again.
        yield* TcpTest.listen(ADDRESS)
      })))

    it.effect("accept waits within its deadline", () =>
      run(Effect.gen(function*() {
        const server = yield* TcpTest.listen(ADDRESS)
        const accepting = yield* Effect.forkChild(server.accept({ timeout: "3 seconds" }))
        yield* TestClock.adjust("3 seconds")
        assert.strictEqual((yield* failureOf(Fiber.join(accepting)))._tag, "TimedOut")
        assert.strictEqual((yield* failureOf(server.accept({ deadline: 0 })))._tag, "TimedOut")
      })))

    it.effect("an interrupted connect releases its slot and its place in the queue", () =>
      run(Effect.gen(function*() {
        const server = yield* TcpTest.listen(ADDRESS)
        const connecting = yield* Effect.forkChild(TcpClient.connect(ADDRESS))
        yield* TestClock.adjust("10 millis")
        assert.strictEqual(yield* server.pending, 1)
        assert.strictEqual((yield* TcpStorage.stats).inUse, 1)
        yield* Fiber.interrupt(connecting)
        assert.strictEqual(yield* server.pending, 0)
        assert.strictEqual((yield* TcpStorage.stats).inUse, 0)
        assert.strictEqual(yield* TcpTest.openSockets, 0)
      })))

    it.effect("a pool that fails fast makes connects fail with OutOfMemory", () =>
      run(
        Effect.gen(function*() {
          yield* TcpTest.listen(ADDRESS, { backlog: 2 })
          yield* TcpClient.connect(ADDRESS)
          const error = yield* failureOf(TcpClient.connect(ADDRESS))
          assert.strictEqual(error._tag, "OutOfMemory")
          assert.strictEqual(error.syscall, "connect")
        }),
        TcpTest.layerWith({ slots: 1, onExhausted: "fail" })
      ))

    it.effect("addresses: literals as InetAddress, the app's end on loopback, port 0 picks one, AddrInUse", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        assert.isTrue(TcpSocket.isTcpSocket(socket))
        assert.strictEqual(socket.remoteAddress && NetAddress.formatInet(socket.remoteAddress), ADDRESS)
        const local = socket.localAddress
        assert.isDefined(local)
        assert.strictEqual(local && NetAddress.formatHost(local), "127.0.0.1")
        assert.strictEqual(peer.remoteAddress, socket.localAddress)
        assert.strictEqual(peer.localAddress, socket.remoteAddress)
        assert.strictEqual((yield* failureOf(TcpTest.listen(ADDRESS)))._tag, "AddrInUse")

        const picked = yield* TcpTest.listen("[::1]:0")
        assert.isAbove(picked.port, 0)
        assert.strictEqual(picked.address, `[::1]:${picked.port}`)
        const six = yield* Effect.forkChild(TcpClient.connect(picked.address))
        const peer6 = yield* picked.accept()
        const socket6 = yield* Fiber.join(six)
        assert.strictEqual(socket6.localAddress && NetAddress.formatHost(socket6.localAddress), "::1")
        assert.strictEqual(peer6.remoteAddress, socket6.localAddress)

        const named = yield* TcpTest.listen("db.internal:5432")
        const byName = yield* Effect.forkChild(TcpClient.connect("db.internal:5432"))
        yield* named.accept()
        assert.isUndefined((yield* Fiber.join(byName)).remoteAddress)
      })))
  })

  describe("recv", () => {
    it.effect("receives exactly n bytes, however the peer split them", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* peer.send("hel")
        yield* peer.send("lo wor")
        yield* peer.send("ld")
        assert.strictEqual(text(yield* socket.recv(5)), "hello")
        assert.strictEqual(text(yield* socket.recv(6)), " world")
        assert.strictEqual((yield* socket.recv(0)).length, 0)
      })))

    it.effect("recvInto and recvv fill the caller's buffers", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* peer.send("abcdefgh")
        const into = new Uint8Array(3)
        yield* socket.recvInto(into)
        assert.strictEqual(text(into), "abc")
        const a = new Uint8Array(2)
        const b = new Uint8Array(3)
        yield* socket.recvv([a, b])
        assert.strictEqual(text(a) + "|" + text(b), "de|fgh")
      })))

    it.effect("waits for bytes sent later", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const receiving = yield* Effect.forkChild(socket.recv(4))
        yield* peer.send("ab")
        yield* TestClock.adjust("1 second")
        assert.isTrue(running(receiving))
        yield* peer.send("cd")
        assert.strictEqual(text(yield* Fiber.join(receiving)), "abcd")
      })))

    it.effect("after the peer's FIN: PeerClosed with the bytes that arrived, then with none", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* peer.send("par")
        yield* peer.end
        const error = yield* failureOf(socket.recv(10))
        assert.strictEqual(error._tag, "PeerClosed")
        assert.strictEqual(error._tag === "PeerClosed" ? text(error.bytes) : "", "par")
        const again = yield* failureOf(socket.recv(1))
        assert.strictEqual(again._tag === "PeerClosed" ? again.bytes.length : -1, 0)
        // Sending still works: the peer only half-closed.
        yield* socket.send(bytes("still here"))
        assert.strictEqual(text(yield* peer.recv(10)), "still here")
      })))

    it.effect("a waiting receive sees the FIN", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const receiving = yield* Effect.forkChild(socket.recv(4))
        yield* peer.send("xy")
        yield* peer.end
        const error = yield* failureOf(Fiber.join(receiving))
        assert.strictEqual(error._tag === "PeerClosed" ? text(error.bytes) : error._tag, "xy")
      })))

    it.effect("deadline 0 sees only bytes already here and consumes nothing otherwise", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* peer.send("abc")
        assert.strictEqual((yield* failureOf(socket.recv(4, { deadline: Deadline.immediate })))._tag, "TimedOut")
        assert.strictEqual(text(yield* socket.recv(3, { deadline: Deadline.immediate })), "abc")
      })))

    it.effect("times out on TestClock; a timed-out receive consumes nothing, so retrying is safe", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* peer.send("ab")
        const receiving = yield* Effect.forkChild(socket.recv(4, { timeout: "1 second" }))
        yield* TestClock.adjust("999 millis")
        assert.isTrue(running(receiving))
        yield* TestClock.adjust("1 millis")
        const error = yield* failureOf(Fiber.join(receiving))
        assert.strictEqual(error._tag, "TimedOut")
        assert.strictEqual(error.syscall, "recv")
        yield* peer.send("cd")
        assert.strictEqual(text(yield* socket.recv(4)), "abcd")
        // A past absolute deadline times out at once.
        assert.strictEqual((yield* failureOf(socket.recv(1, { deadline: 1 })))._tag, "TimedOut")
      })))

    it.effect("a receive larger than the slot that stops halfway leaves the inbound direction reset", () =>
      run(
        Effect.gen(function*() {
          const { peer, socket } = yield* pair()
          yield* peer.send(new Uint8Array(1500))
          const receiving = yield* Effect.forkChild(socket.recv(4096, { timeout: "1 second" }))
          yield* TestClock.adjust("1 second")
          assert.strictEqual((yield* failureOf(Fiber.join(receiving)))._tag, "TimedOut")
          yield* peer.send("more")
          const error = yield* failureOf(socket.recv(1))
          assert.strictEqual(error._tag, "ConnReset")
        }),
        TcpTest.layerWith({ bufferSize: 1024 })
      ))

    it.effect("an interrupted receive consumes nothing and releases its turn", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const first = yield* Effect.forkChild(socket.recv(4))
        yield* TestClock.adjust("1 millis")
        yield* peer.send("ab")
        yield* Fiber.interrupt(first)
        yield* peer.send("cd")
        assert.strictEqual(text(yield* socket.recv(4, { deadline: 0 })), "abcd")
      })))

    it.effect("concurrent receives run in call order", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const a = yield* Effect.forkChild(socket.recv(2))
        const b = yield* Effect.forkChild(socket.recv(2))
        yield* TestClock.adjust("1 millis")
        yield* peer.send("1122")
        assert.strictEqual(text(yield* Fiber.join(a)), "11")
        assert.strictEqual(text(yield* Fiber.join(b)), "22")
      })))

    it.effect("bad lengths and buffers are InvalidArgument", () =>
      run(Effect.gen(function*() {
        const { socket } = yield* pair()
        for (const n of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER]) {
          assert.strictEqual((yield* failureOf(socket.recv(n)))._tag, "InvalidArgument")
        }
        assert.strictEqual((yield* failureOf(socket.recvInto("x" as unknown as Uint8Array)))._tag, "InvalidArgument")
        assert.strictEqual((yield* failureOf(socket.recvv([1] as unknown as Array<Uint8Array>)))._tag, "InvalidArgument")
        assert.strictEqual((yield* failureOf(socket.recv(1, { timeout: "soon" as "1 second" })))._tag, "InvalidArgument")
      })))
  })

  describe("module functions", () => {
    it.effect("TcpSocket.send / recv / close work on in-memory sockets, data-first and data-last", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* TcpSocket.send(socket, bytes("ping"))
        assert.strictEqual(text(yield* peer.recv(4)), "ping")
        yield* peer.send("pong")
        assert.strictEqual(text(yield* socket.pipe(TcpSocket.recv(4))), "pong")
        yield* peer.end
        yield* TcpSocket.close(socket)
        const error = yield* Effect.flip(TcpSocket.recv(socket, 1))
        assert.strictEqual(error._tag, "Closed")
      })))
  })

  describe("send and done", () => {
    it.effect("the peer receives exactly what was sent; the caller may reuse its buffer at once", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const buffer = bytes("ping")
        yield* socket.send(buffer)
        buffer.fill(0)
        yield* socket.sendv([bytes("a"), bytes(""), bytes("bc")])
        assert.strictEqual(text(yield* peer.recv(7)), "pingabc")
        assert.deepStrictEqual(yield* peer.status, { app: "open", unread: 0, undelivered: 0 })
      })))

    it.effect("done: FIN after the bytes, receiving goes on, sends fail with BrokenPipe", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* socket.send(bytes("request"))
        yield* socket.done()
        assert.strictEqual((yield* peer.status).app, "done")
        assert.strictEqual(text(yield* peer.recvAll()), "request")
        const afterFin = yield* failureOf(peer.recv(1))
        assert.strictEqual(afterFin._tag, "PeerClosed")
        yield* peer.send("reply")
        assert.strictEqual(text(yield* socket.recv(5)), "reply")
        assert.strictEqual((yield* failureOf(socket.send(bytes("x"))))._tag, "BrokenPipe")
        assert.strictEqual((yield* failureOf(socket.done()))._tag, "BrokenPipe")
      })))

    it.effect("with a window, a send waits for the peer to receive", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair({ window: 4 })
        const sending = yield* Effect.forkChild(socket.send(bytes("0123456789")))
        yield* TestClock.adjust("1 second")
        assert.isTrue(running(sending))
        assert.strictEqual((yield* peer.status).unread, 4)
        assert.strictEqual(text(yield* peer.recv(10)), "0123456789")
        yield* Fiber.join(sending)
      })))

    it.effect("a send that times out breaks the outbound direction (ConnReset), receiving still works", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair({ window: 4 })
        const sending = yield* Effect.forkChild(socket.send(bytes("0123456789"), { timeout: "2 seconds" }))
        yield* TestClock.adjust("2 seconds")
        const error = yield* failureOf(Fiber.join(sending))
        assert.strictEqual(error._tag, "TimedOut")
        assert.strictEqual(error.syscall, "send")
        assert.strictEqual((yield* failureOf(socket.send(bytes("x"))))._tag, "ConnReset")
        yield* peer.send("ok")
        assert.strictEqual(text(yield* socket.recv(2)), "ok")
      })))

    it.effect("a peer's reset: the app's next recv, send, done and close fail with ConnReset", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const receiving = yield* Effect.forkChild(socket.recv(4))
        yield* peer.send("ab")
        yield* peer.reset
        assert.strictEqual((yield* failureOf(Fiber.join(receiving)))._tag, "ConnReset")
        assert.strictEqual((yield* failureOf(socket.send(bytes("x"))))._tag, "ConnReset")
        assert.strictEqual((yield* failureOf(socket.done()))._tag, "ConnReset")
        assert.strictEqual((yield* failureOf(socket.close()))._tag, "ConnReset")
        assert.strictEqual((yield* peer.status).app, "aborted")
        assert.strictEqual((yield* failureOf(peer.send("late")))._tag, "Closed")
      })))

    it.effect("a blocked send sees the reset", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair({ window: 1 })
        const sending = yield* Effect.forkChild(socket.send(bytes("abc")))
        yield* TestClock.adjust("1 millis")
        yield* peer.reset
        assert.strictEqual((yield* failureOf(Fiber.join(sending)))._tag, "ConnReset")
      })))

    it.effect("bad input to send is InvalidArgument", () =>
      run(Effect.gen(function*() {
        const { socket } = yield* pair()
        assert.strictEqual((yield* failureOf(socket.send("x" as unknown as Uint8Array)))._tag, "InvalidArgument")
        assert.strictEqual((yield* failureOf(socket.sendv("x" as unknown as Array<Uint8Array>)))._tag, "InvalidArgument")
        assert.strictEqual((yield* failureOf(socket.done({ deadline: -2 })))._tag, "InvalidArgument")
      })))
  })

  describe("the peer", () => {
    it.effect("a peer receive that times out consumes nothing", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* socket.send(bytes("abc"))
        assert.strictEqual((yield* failureOf(peer.recv(4, { timeout: "1 second" }).pipe(
          Effect.forkChild,
          Effect.tap(() => TestClock.adjust("1 second")),
          Effect.flatMap(Fiber.join)
        )))._tag, "TimedOut")
        assert.strictEqual((yield* failureOf(peer.recvAll({ deadline: 0 })))._tag, "TimedOut")
        assert.strictEqual((yield* peer.status).unread, 3)
        yield* socket.send(bytes("d"))
        yield* socket.done()
        assert.strictEqual(text(yield* peer.recvAll()), "abcd")
      })))

    it.effect("end and reset always succeed, and are idempotent", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* peer.end
        yield* peer.end
        assert.strictEqual((yield* failureOf(peer.send("x")))._tag, "BrokenPipe")
        yield* peer.reset
        yield* peer.reset
        assert.strictEqual((yield* failureOf(peer.recv(1)))._tag, "Closed")
        assert.strictEqual((yield* failureOf(socket.send(bytes("x"))))._tag, "ConnReset")
      })))
  })

  describe("close, abort and the scope", () => {
    it.effect("close: FIN, then waits for the peer's FIN; every call afterwards fails with Closed", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* socket.send(bytes("bye"))
        const closing = yield* Effect.forkChild(socket.close())
        assert.strictEqual(text(yield* peer.recvAll()), "bye")
        assert.strictEqual((yield* peer.status).app, "closing")
        // A closing application discards what it is sent.
        yield* peer.send("ignored")
        yield* peer.end
        yield* Fiber.join(closing)
        assert.deepStrictEqual(yield* peer.status, { app: "closed", unread: 0, undelivered: 0 })
        assert.strictEqual((yield* failureOf(socket.send(bytes("x"))))._tag, "Closed")
        assert.strictEqual((yield* failureOf(socket.recv(1)))._tag, "Closed")
        assert.strictEqual((yield* failureOf(socket.done()))._tag, "Closed")
        assert.strictEqual((yield* failureOf(socket.close()))._tag, "Closed")
        assert.strictEqual((yield* failureOf(peer.send("x")))._tag, "BrokenPipe")
        assert.strictEqual(yield* TcpTest.openSockets, 0)
        assert.strictEqual((yield* TcpStorage.stats).inUse, 0)
      })))

    it.effect("close times out at the socket's closeTimeout (1 s by default), and is aborted anyway", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const closing = yield* Effect.forkChild(socket.close())
        yield* TestClock.adjust("999 millis")
        assert.isTrue(running(closing))
        yield* TestClock.adjust("1 millis")
        const error = yield* failureOf(Fiber.join(closing))
        assert.strictEqual(error._tag, "TimedOut")
        assert.strictEqual(error.syscall, "close")
        assert.strictEqual((yield* peer.status).app, "aborted")
        assert.strictEqual((yield* failureOf(socket.recv(1)))._tag, "Closed")
      })))

    it.effect("closeTimeout and close's own deadline", () =>
      run(Effect.gen(function*() {
        const { socket } = yield* pair(undefined, { closeTimeout: "5 seconds" })
        const closing = yield* Effect.forkChild(socket.close())
        yield* TestClock.adjust("4 seconds")
        assert.isTrue(running(closing))
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* failureOf(Fiber.join(closing)))._tag, "TimedOut")
      })))

    it.effect("close with deadline 0 succeeds when the peer's FIN is already here", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* peer.end
        yield* socket.close({ deadline: Deadline.immediate })
        assert.strictEqual((yield* peer.status).app, "closed")
      })))

    it.effect("close wakes waiting calls with Closed", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const receiving = yield* Effect.forkChild(socket.recv(1))
        yield* TestClock.adjust("1 millis")
        const closing = yield* Effect.forkChild(socket.close())
        yield* TestClock.adjust("1 millis")
        assert.strictEqual((yield* failureOf(Fiber.join(receiving)))._tag, "Closed")
        yield* peer.end
        yield* Fiber.join(closing)
      })))

    it.effect("abort: always succeeds, FIN when nothing is unread, later calls fail with Closed", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* socket.send(bytes("last"))
        yield* socket.abort
        yield* socket.abort
        assert.strictEqual((yield* peer.status).app, "aborted")
        const error = yield* failureOf(peer.recv(10))
        assert.strictEqual(error._tag === "PeerClosed" ? text(error.bytes) : error._tag, "last")
        assert.strictEqual((yield* failureOf(socket.send(bytes("x"))))._tag, "Closed")
        assert.strictEqual((yield* failureOf(socket.close()))._tag, "Closed")
        assert.strictEqual((yield* TcpStorage.stats).inUse, 0)
      })))

    it.effect("abort with unread bytes resets the peer", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        yield* peer.send("unread")
        yield* socket.abort
        assert.strictEqual((yield* failureOf(peer.recv(1)))._tag, "ConnReset")
        assert.strictEqual((yield* failureOf(peer.send("x")))._tag, "ConnReset")
      })))

    it.effect("a scope that ends after success sends FIN at once and finishes the close in the background", () =>
      run(Effect.gen(function*() {
        const server = yield* TcpTest.listen(ADDRESS)
        const app = yield* Effect.forkChild(
          TcpClient.connect(ADDRESS).pipe(
            Effect.flatMap((socket) => socket.send(bytes("hi"))),
            Effect.scoped
          )
        )
        const peer = yield* server.accept()
        yield* Fiber.join(app)
        assert.strictEqual((yield* peer.status).app, "closing")
        assert.strictEqual(text(yield* peer.recvAll()), "hi")
        assert.strictEqual(yield* TcpTest.openSockets, 1)
        yield* peer.end
        yield* TestClock.adjust("1 millis")
        assert.strictEqual((yield* peer.status).app, "closed")
        assert.strictEqual(yield* TcpTest.openSockets, 0)
        assert.strictEqual((yield* TcpStorage.stats).inUse, 0)
      })))

    it.effect("the background close gives up at closeTimeout", () =>
      run(Effect.gen(function*() {
        const server = yield* TcpTest.listen(ADDRESS)
        const app = yield* Effect.forkChild(Effect.scoped(TcpClient.connect(ADDRESS)))
        const peer = yield* server.accept()
        yield* Fiber.join(app)
        yield* TestClock.adjust("999 millis")
        assert.strictEqual((yield* peer.status).app, "closing")
        yield* TestClock.adjust("1 millis")
        assert.strictEqual((yield* peer.status).app, "aborted")
        assert.strictEqual(yield* TcpTest.openSockets, 0)
      })))

    it.effect("a scope that fails aborts at once", () =>
      run(Effect.gen(function*() {
        const server = yield* TcpTest.listen(ADDRESS)
        const app = yield* Effect.forkChild(
          TcpClient.connect(ADDRESS).pipe(
            Effect.flatMap(() => Effect.fail("boom")),
            Effect.scoped,
            Effect.flip
          )
        )
        const peer = yield* server.accept()
        assert.strictEqual(yield* Fiber.join(app), "boom")
        assert.strictEqual((yield* peer.status).app, "aborted")
        assert.strictEqual(yield* TcpTest.openSockets, 0)
      })))

    it.effect("an interrupted application aborts its sockets", () =>
      run(Effect.gen(function*() {
        const { server } = yield* pair()
        const app = yield* Effect.forkChild(
          TcpClient.connect(ADDRESS).pipe(Effect.flatMap((socket) => socket.recv(1)), Effect.scoped)
        )
        const peer = yield* server.accept()
        yield* TestClock.adjust("1 millis")
        yield* Fiber.interrupt(app)
        assert.strictEqual((yield* peer.status).app, "aborted")
        assert.strictEqual(yield* TcpTest.openSockets, 1) // the first pair's socket
      })))
  })

  describe("injected errors", () => {
    it.effect("reach exactly the next call of their kind, and move no bytes", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const injected = reset("recv")
        yield* peer.send("data")
        yield* peer.failNext("recv", injected)
        assert.strictEqual(yield* failureOf(socket.recv(4)), injected)
        assert.strictEqual(text(yield* socket.recv(4)), "data")

        const broken = TcpError.make(TcpError.BrokenPipe, "EPIPE", "send", ADDRESS, "injected")
        yield* peer.failNext("send", broken)
        assert.strictEqual(yield* failureOf(socket.sendv([bytes("lost")])), broken)
        yield* socket.send(bytes("kept"))
        assert.strictEqual((yield* peer.status).unread, 4)
        assert.strictEqual(text(yield* peer.recv(4)), "kept")
      })))

    it.effect("queue in order, per kind", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const first = TcpError.timedOut("recv", ADDRESS)
        const second = TcpError.make(TcpError.SystemError, "EPROTO", "recv", ADDRESS, undefined)
        yield* peer.failNext("recv", first)
        yield* peer.failNext("recv", second)
        yield* peer.failNext("done", TcpError.timedOut("done", ADDRESS))
        yield* peer.send("x")
        assert.strictEqual(yield* failureOf(socket.recvInto(new Uint8Array(1))), first)
        assert.strictEqual(yield* failureOf(socket.recvv([new Uint8Array(1)])), second)
        yield* socket.send(bytes("send is not affected"))
        assert.strictEqual((yield* failureOf(socket.done()))._tag, "TimedOut")
        yield* socket.done()
        assert.strictEqual((yield* peer.status).app, "done")
      })))

    it.effect("an injected close error still closes the socket", () =>
      run(Effect.gen(function*() {
        const { peer, socket } = yield* pair()
        const injected = TcpError.make(TcpError.SystemError, "EIO", "close", ADDRESS, undefined)
        yield* peer.failNext("close", injected)
        assert.strictEqual(yield* failureOf(socket.close()), injected)
        assert.strictEqual((yield* peer.status).app, "aborted")
        assert.strictEqual((yield* failureOf(socket.recv(1)))._tag, "Closed")
      })))

    it.effect("a listener's injections apply to the next connection it establishes only", () =>
      run(Effect.gen(function*() {
        const server = yield* TcpTest.listen(ADDRESS, { backlog: 2 })
        const injected = TcpError.closed("send", ADDRESS)
        yield* server.failNext("send", injected)
        const first = yield* TcpClient.connect(ADDRESS)
        const second = yield* TcpClient.connect(ADDRESS)
        assert.strictEqual(yield* failureOf(first.send(bytes("a"))), injected)
        yield* second.send(bytes("b"))
        yield* first.send(bytes("a"))
      })))

    it("only errors the call can produce type-check", () => {
      const typed = (peer: TcpTest.Peer, listener: TcpTest.Listener) => [
        peer.failNext("recv", TcpError.peerClosed("recv", new Uint8Array())),
        peer.failNext("close", TcpError.timedOut("close")),
        // @ts-expect-error: a receive never fails with BrokenPipe
        peer.failNext("recv", TcpError.make(TcpError.BrokenPipe, "EPIPE", "recv", undefined, undefined)),
        // @ts-expect-error: close never fails with PeerClosed
        peer.failNext("close", TcpError.peerClosed("close", new Uint8Array())),
        // @ts-expect-error: a send never fails with ConnRefused
        listener.failNext("send", TcpError.make(TcpError.ConnRefused, "ECONNREFUSED", "send", undefined, undefined)),
        // @ts-expect-error: fromCode's result is any error; narrow it first
        peer.failNext("recv", TcpError.fromCode("ECONNRESET", "recv")),
        peer.failNext("recv", TcpError.narrow(TcpError.fromCode("ECONNRESET", "recv"), TcpError.recvTags))
      ]
      assert.isFunction(typed)
    })
  })

  it.effect("sockets pipe like the library's", () =>
    run(Effect.gen(function*() {
      const { peer, socket } = yield* pair()
      yield* peer.send("ok")
      const received = yield* socket.pipe((s) => s.recv(2))
      assert.strictEqual(text(received), "ok")
    })))
})
