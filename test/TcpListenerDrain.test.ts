/**
 * TcpListener.serve stopping: `listener.close` drains (the handlers already
 * running finish and their replies reach the clients; serve returns after
 * the last), connections not yet taken are closed with the listener, and
 * interrupting serve interrupts its handlers and aborts their sockets.
 * Many real loopback clients; every step waits on an event, never a sleep.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import type { Scope } from "effect"
import { TcpListener, TcpNode } from "../src/index.ts"
import type { TcpSocket } from "../src/index.ts"
import { checkFdLeaks, expectWaiting, rawClient, withTcp } from "./helpers.ts"

const T = { timeout: "10 seconds" } as const

/** Room for every client's handler at once (the default test pool has 32 slots). */
const Tcp = TcpNode.layerWith({ slots: 128, bufferSize: 16 * 1024 })

/** A request is 4 ASCII digits; its reply is the same digits behind "ok:". */
const request = (i: number) => String(i).padStart(4, "0")
const reply = (text: string) => `ok:${text}`

/** A plain client that sent its request and records what it hears until the server hangs up. */
interface Client {
  readonly index: number
  /** Everything received so far. */
  readonly received: () => string
  /** Completes when the connection is gone (after EOF or a reset). */
  readonly gone: Effect.Effect<void>
}

/**
 * Connects, sends request `index` and listens: on the server's FIN it
 * finishes its side too, so the server's graceful close completes at once.
 */
const client = (port: number, index: number): Effect.Effect<Client, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const socket = yield* rawClient(port)
    const closed = Deferred.makeUnsafe<void>()
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.on("error", () => {})
    socket.on("end", () => socket.end())
    socket.on("close", () => Deferred.doneUnsafe(closed, Effect.void))
    socket.write(request(index))
    return { index, received: () => Buffer.concat(chunks).toString(), gone: Deferred.await(closed) }
  })

const clients = (port: number, count: number) =>
  Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => client(port, i))

/**
 * Handler parts the tests share: each handler reads its request, counts
 * itself as "read" (and signals once all `expected` have), then waits for
 * `gateFor(request)` before it replies.
 */
const gatedHandler = (
  expected: number,
  gateFor: (text: string) => Effect.Effect<void>
) => {
  const progress = { read: 0, replied: 0, interrupted: 0 }
  const allRead = Deferred.makeUnsafe<void>()
  const handler = (socket: TcpSocket.TcpSocket) =>
    Effect.gen(function*() {
      const text = new TextDecoder().decode(yield* socket.recv(4, T))
      progress.read += 1
      if (progress.read === expected) Deferred.doneUnsafe(allRead, Effect.void)
      yield* gateFor(text)
      yield* socket.send(new TextEncoder().encode(reply(text)), T)
      progress.replied += 1
    }).pipe(Effect.onInterrupt(() => Effect.sync(() => progress.interrupted += 1)))
  return { progress, allRead: Deferred.await(allRead), handler }
}

describe("TcpListener.serve drain", () => {
  checkFdLeaks()

  it.live("listener.close lets every running handler finish: each client gets its reply, serve returns after the last", () =>
    withTcp(Effect.gen(function*() {
      const count = 100
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const release = Deferred.makeUnsafe<void>()
      const { allRead, handler, progress } = gatedHandler(count, () => Deferred.await(release))
      const serving = yield* Effect.forkScoped(TcpListener.serve(listener, handler))
      const all = yield* clients(listener.port, count)
      yield* allRead // every handler is mid-request
      yield* listener.close
      yield* expectWaiting(serving, "serve, with its handlers running after the close")
      Deferred.doneUnsafe(release, Effect.void)
      const exit = yield* Fiber.await(serving)
      assert.isTrue(Exit.isSuccess(exit), "serve ends normally after the drain")
      assert.strictEqual(progress.replied, count, "serve returned before every handler had replied")
      assert.strictEqual(progress.interrupted, 0, "no handler was interrupted")
      for (const c of all) {
        yield* c.gone
        assert.strictEqual(c.received(), reply(request(c.index)), `client ${c.index} got its reply, then EOF`)
      }
    }), Tcp))

  it.live("interrupting serve while it drains interrupts the handlers still running and aborts their sockets", () =>
    withTcp(Effect.gen(function*() {
      const count = 20
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const releaseEven = Deferred.makeUnsafe<void>()
      // Even requests may reply once released; odd ones never get to.
      const { allRead, handler, progress } = gatedHandler(
        count,
        (text) => Number(text) % 2 === 0 ? Deferred.await(releaseEven) : Effect.never
      )
      const serving = yield* Effect.forkScoped(TcpListener.serve(listener, handler))
      const all = yield* clients(listener.port, count)
      const even = all.filter((c) => c.index % 2 === 0)
      const odd = all.filter((c) => c.index % 2 === 1)
      yield* allRead
      yield* listener.close
      yield* expectWaiting(serving, "serve, with its handlers running after the close")
      Deferred.doneUnsafe(releaseEven, Effect.void)
      for (const c of even) {
        yield* c.gone
        assert.strictEqual(c.received(), reply(request(c.index)), `draining: client ${c.index} got its reply`)
      }
      assert.isUndefined(serving.pollUnsafe(), "serve returned while handlers were still running")
      yield* Fiber.interrupt(serving)
      for (const c of odd) {
        yield* c.gone
        assert.strictEqual(c.received(), "", `client ${c.index}: its handler was interrupted before replying`)
      }
      assert.strictEqual(progress.interrupted, odd.length, "every handler still running was interrupted")
      assert.strictEqual(progress.replied, even.length)
    }), Tcp))

  it.live("connections not yet taken when the listener closes are closed unanswered; the running handler still replies", () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const release = Deferred.makeUnsafe<void>()
      const { allRead, handler, progress } = gatedHandler(1, () => Deferred.await(release))
      // concurrency 1: while the first handler runs, serve takes nothing more
      const serving = yield* Effect.forkScoped(TcpListener.serve(listener, handler, { concurrency: 1 }))
      const first = yield* client(listener.port, 0)
      yield* allRead
      const waiting = yield* Effect.forEach([1, 2, 3, 4, 5], (i) => client(listener.port, i))
      yield* listener.close
      yield* expectWaiting(serving, "serve, with its handler running after the close")
      for (const c of waiting) {
        yield* c.gone
        assert.strictEqual(c.received(), "", `client ${c.index} was closed with the listener, unanswered`)
      }
      assert.isUndefined(serving.pollUnsafe(), "serve returned while its handler was running")
      Deferred.doneUnsafe(release, Effect.void)
      yield* first.gone
      assert.strictEqual(first.received(), reply(request(0)), "the running handler's reply arrived")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(serving)))
      assert.strictEqual(progress.read, 1, "no handler ran for a connection not taken before the close")
      assert.strictEqual(progress.replied, 1)
    }), Tcp))
})
