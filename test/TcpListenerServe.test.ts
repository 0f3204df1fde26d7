/**
 * TcpListener.serve: each connection in a scope of its own, bounded
 * concurrency, handler failures confined to their connection, the end of
 * serving when the listener closes, and interruption. Real loopback sockets.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import * as Net from "node:net"
import { TcpListener } from "../src/index.ts"
import type { TcpError } from "../src/index.ts"
import type { TcpSocket } from "../src/index.ts"
import {
  checkFdLeaks,
  echo4,
  expectPoolIdle,
  expectWaiting,
  plainExchange,
  rawClient,
  readAll,
  withTcp
} from "./helpers.ts"

const T = { timeout: "3 seconds" } as const

/**
 * Whether `client` hears nothing back within `ms`: a window for something
 * that must not happen, so a slow machine only makes it longer.
 */
const silentFor = (client: Net.Socket, ms: number) =>
  Effect.callback<boolean>((resume) => {
    const onData = () => {
      clearTimeout(timer)
      resume(Effect.succeed(false))
    }
    const timer = setTimeout(() => {
      client.off("data", onData)
      resume(Effect.succeed(true))
    }, ms)
    client.once("data", onData)
  })

describe("TcpListener.serve", () => {
  checkFdLeaks()

  it.live("serves every connection, each socket closed when its handler ends", () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      yield* Effect.forkScoped(TcpListener.serve(listener, echo4))
      for (let i = 0; i < 5; i++) {
        const client = yield* rawClient(listener.port)
        assert.strictEqual(yield* plainExchange(client, `m${i}!!`.slice(0, 4)), `m${i}!!`.slice(0, 4))
        const closing = readAll(client)
        client.end()
        yield* closing // our side ended too: the handler's scope closed the socket
      }
      yield* listener.close
    })))

  it.live("concurrency bounds how many connections are handled at once", () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      yield* Effect.forkScoped(listener.pipe(TcpListener.serve(echo4, { concurrency: 1 })))
      const first = yield* rawClient(listener.port)
      const second = yield* rawClient(listener.port)
      assert.strictEqual(yield* plainExchange(first, "aaaa"), "aaaa")
      second.write("bbbb")
      assert.isTrue(yield* silentFor(second, 200), "the second connection waits while the first is served")
      const answered = Effect.callback<string>((resume) => {
        second.once("data", (chunk: Buffer) => resume(Effect.succeed(chunk.toString())))
      })
      first.end()
      assert.strictEqual(yield* answered.pipe(Effect.timeout("3 seconds")), "bbbb")
      second.end()
      yield* listener.close
    })))

  it.live("a failing handler aborts only its own connection; serving goes on", () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const handler = (socket: TcpSocket.TcpSocket): Effect.Effect<void, TcpError.TcpError | "handler failed"> =>
        Effect.flatMap(
          socket.recv(4, T),
          (bytes): Effect.Effect<void, TcpError.TcpError | "handler failed"> =>
            new TextDecoder().decode(bytes) === "boom" ? Effect.fail("handler failed") : socket.send(bytes, T)
        )
      yield* Effect.forkScoped(TcpListener.serve(listener, handler))
      const doomed = yield* rawClient(listener.port)
      doomed.on("error", () => {})
      const gone = Effect.callback<void>((resume) => {
        doomed.once("close", () => resume(Effect.void))
        doomed.once("end", () => resume(Effect.void))
      })
      doomed.write("boom")
      yield* gone.pipe(Effect.timeout("3 seconds"))
      const fine = yield* rawClient(listener.port)
      assert.strictEqual(yield* plainExchange(fine, "okay"), "okay")
      fine.end()
      yield* listener.close
    })))

  it.live("serve ends when the listener closes", () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const serving = yield* Effect.forkScoped(TcpListener.serve(listener, echo4))
      yield* expectWaiting(serving, "serve with no client")
      yield* listener.close
      const exit = yield* Fiber.await(serving).pipe(Effect.timeout("3 seconds"))
      assert.isTrue(Exit.isSuccess(exit), "serve returns once accept says Closed")
    })))

  it.live("interrupting serve aborts the connections it handles", () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const serving = yield* Effect.forkScoped(TcpListener.serve(listener, echo4))
      const client = yield* rawClient(listener.port)
      client.on("error", () => {})
      assert.strictEqual(yield* plainExchange(client, "ping"), "ping")
      const hungUp = Effect.callback<void>((resume) => {
        client.once("close", () => resume(Effect.void))
        client.once("end", () => resume(Effect.void))
      })
      yield* Fiber.interrupt(serving)
      yield* hungUp.pipe(Effect.timeout("3 seconds"))
      yield* expectPoolIdle
    })))

  it.live("invalid concurrency is InvalidArgument", () =>
    withTcp(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      for (const concurrency of [0, -1, 1.5, Number.NaN]) {
        const error = yield* Effect.flip(TcpListener.serve(listener, echo4, { concurrency }))
        assert.strictEqual(error._tag, "InvalidArgument", `concurrency ${concurrency}`)
      }
    })))
})
