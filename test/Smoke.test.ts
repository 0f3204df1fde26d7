import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TcpClient, TcpListener } from "../src/index.ts"
import { checkFdLeaks, closedPort, expectPoolIdle, fullBacklog, TestTcp } from "./helpers.ts"

describe("smoke", () => {
  checkFdLeaks()
  it.live("echo through listener and client", () =>
    Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const server = yield* Effect.forkScoped(Effect.scoped(Effect.gen(function*() {
        const s = yield* listener.accept({ timeout: "2 seconds" })
        const bytes = yield* s.recv(5, { timeout: "2 seconds" })
        yield* s.send(bytes)
        yield* s.close({ timeout: "2 seconds" })
      })))
      const c = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, { timeout: "2 seconds" })
      yield* c.send(new TextEncoder().encode("hello"))
      const back = yield* c.recv(5, { timeout: "2 seconds" })
      assert.strictEqual(new TextDecoder().decode(back), "hello")
      yield* c.close({ timeout: "2 seconds" })
      yield* Fiber.join(server)
      yield* expectPoolIdle
    }).pipe(Effect.scoped, Effect.provide(TestTcp)))

  it.live("refused and timed out", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const refused = yield* Effect.flip(TcpClient.connect(`127.0.0.1:${port}`, { timeout: "2 seconds" }))
      assert.strictEqual(refused._tag, "ConnRefused")
      const full = yield* fullBacklog
      const start = Date.now()
      const timedOut = yield* Effect.flip(TcpClient.connect(full.address, { timeout: "300 millis" }))
      assert.strictEqual(timedOut._tag, "TimedOut")
      assert.isAtLeast(Date.now() - start, 250)
      yield* expectPoolIdle
    }).pipe(Effect.scoped, Effect.provide(TestTcp)))
})
