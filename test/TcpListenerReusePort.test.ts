/**
 * `reusePort`: several listeners on one address and port, connections
 * spread across them by the kernel (Linux SO_REUSEPORT). Without it the
 * second listener fails `AddrInUse`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TcpClient, TcpListener } from "../src/index.ts"
import { checkFdLeaks, echo4, eventually, roundTrip, withTcp } from "./helpers.ts"

const T = { timeout: "10 seconds" } as const

describe.skipIf(process.platform !== "linux")("TcpListener reusePort", () => {
  checkFdLeaks()

  it.live("two listeners share a port and both serve; without reusePort the second is AddrInUse", () =>
    withTcp(Effect.gen(function*() {
      const first = yield* TcpListener.listen("127.0.0.1:0", { reusePort: true })
      const second = yield* TcpListener.listen(`127.0.0.1:${first.port}`, { reusePort: true })
      assert.strictEqual(second.port, first.port)
      const served = [0, 0]
      for (const [i, listener] of [first, second].entries()) {
        yield* Effect.forkScoped(TcpListener.serve(listener, (socket) => {
          served[i] = (served[i] ?? 0) + 1
          return echo4(socket)
        }))
      }
      // The kernel picks a listener by hashing each connection's addresses: 64 clients reach both (all 64 on one: 2^-63).
      for (let i = 0; i < 64; i++) {
        yield* Effect.scoped(Effect.flatMap(TcpClient.connect(`127.0.0.1:${first.port}`, T), (socket) => roundTrip(socket, "ping")))
      }
      yield* eventually(() => (served[0] ?? 0) + (served[1] ?? 0) === 64, "every connection was served")
      assert.isAbove(served[0] ?? 0, 0, `first served ${served[0]}`)
      assert.isAbove(served[1] ?? 0, 0, `second served ${served[1]}`)
      const taken = yield* Effect.flip(Effect.scoped(TcpListener.listen(`127.0.0.1:${first.port}`)))
      assert.strictEqual(taken._tag, "AddrInUse")
    })))

  it.live("reusePort must be a boolean", () =>
    withTcp(Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(TcpListener.listen("127.0.0.1:0", { reusePort: "yes" as never })))
      assert.strictEqual(error._tag, "InvalidArgument")
    })))
})
