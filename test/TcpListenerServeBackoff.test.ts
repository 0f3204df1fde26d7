/**
 * TcpListener.serve's pause after an accept error that can pass: each
 * failure is logged, then retried after 10 ms, 20 ms, ... doubling up to
 * 1 s, and after a success the pause starts again at 10 ms. The accept
 * errors are real (a 1-slot "fail" pool whose slot the test holds, and a real
 * loopback client waiting); the pauses run on `TestClock`, so the test
 * steps virtual time to each expected retry and checks nothing retries a
 * millisecond earlier.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Logger, Scope } from "effect"
import { TestClock } from "effect/testing"
import { TcpListener, TcpNode, TcpStorage } from "../src/index.ts"
import type { TcpSocket } from "../src/index.ts"
import { checkFdLeaks, eventually, rawClient, turns, withTcp } from "./helpers.ts"

const T = { timeout: "10 seconds" } as const
const oneSlotFail = TcpNode.layerWith({ slots: 1, bufferSize: 16 * 1024, onExhausted: "fail" })

/** The pauses serve makes between failed accepts, in milliseconds, before the 1 s cap repeats. */
const pauses = [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]

/** Takes the pool's only slot in a scope of its own; closing that scope gives it back. */
const holdOnlySlot = Effect.gen(function*() {
  const scope = yield* Scope.make()
  yield* TcpStorage.acquire().pipe(Scope.provide(scope))
  return Scope.close(scope, Exit.void)
})

/** Echoes one byte, then ends: the connection closes and its slot comes back. */
const echoOne = (socket: TcpSocket.TcpSocket) => Effect.flatMap(socket.recv(1, T), (byte) => socket.send(byte, T))

describe("TcpListener.serve back-off", () => {
  checkFdLeaks()

  it.effect("accept errors are logged and retried after 10, 20, 40 ... ms up to 1 s; a success starts the pauses over", () => {
    const warnings: Array<string> = []
    const recorder = Logger.make((options) => {
      const line = Logger.formatSimple.log(options)
      if (line.includes("accept failed, retrying")) warnings.push(line)
    })
    /** Steps virtual time to just before the next retry (none yet), then onto it (one more). */
    const expectRetryAfter = (millis: number) =>
      Effect.gen(function*() {
        const before = warnings.length
        yield* TestClock.adjust(millis - 1)
        yield* turns(20)
        assert.strictEqual(warnings.length, before, `retried before ${millis} ms had passed`)
        yield* TestClock.adjust(1)
        yield* eventually(() => warnings.length === before + 1, `serve retries after ${millis} ms`)
      })
    return withTcp(
      Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        yield* Effect.forkScoped(TcpListener.serve(listener, echoOne))
        let release = yield* holdOnlySlot
        const first = yield* rawClient(listener.port)
        yield* eventually(() => warnings.length === 1, "serve's first accept fails OutOfMemory and says so")
        assert.include(warnings[0], "ENOMEM")
        for (const millis of pauses) yield* expectRetryAfter(millis)

        // a slot again: the next retry serves the waiting client
        yield* release
        const echoed = Effect.callback<string>((resume) => {
          first.once("data", (chunk: Buffer) => resume(Effect.succeed(chunk.toString())))
        })
        // the handler's graceful close waits for this client's FIN
        first.on("end", () => first.end())
        first.write("a")
        yield* TestClock.adjust(1000)
        assert.strictEqual(yield* echoed, "a")
        yield* eventually(Effect.map(TcpStorage.stats, (stats) => stats.inUse === 0), "the handler's slot comes back")

        // after that success, a new failure is retried after 10 ms again
        release = yield* holdOnlySlot
        const failures = warnings.length
        yield* rawClient(listener.port)
        yield* eventually(() => warnings.length === failures + 1, "serve's next accept fails OutOfMemory")
        yield* expectRetryAfter(10)
        yield* expectRetryAfter(20)
        yield* release
        yield* listener.close
      }),
      oneSlotFail
    ).pipe(Effect.provide(Logger.layer([recorder])))
  })
})
