/**
 * Happy eyeballs when more than one attempt reaches the server: a name
 * resolving to 127.0.0.1 and ::1, both listening on the same port, and a
 * 0 ms stagger on `TestClock` (where a 0 ms sleep ends at once), so both
 * attempts start in the same turn of the event loop and both handshakes
 * complete. Exactly one connection may stay open, the winner's; the client
 * closes every other one. Real loopback servers; waits are bounded polls.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Net from "node:net"
import { TcpClient } from "../src/index.ts"
import { checkFdLeaks, eventually, expectPoolIdle, resolvingTcp } from "./helpers.ts"

const T = { timeout: "5 seconds" } as const

/** Server-side ends of the connections made so far, with whether each is still open. */
interface Peers {
  readonly port: number
  readonly open: () => ReadonlyArray<Net.Socket>
  readonly total: () => number
}

/** Plain node:net servers on 127.0.0.1 and ::1, the same port, closed with the scope. */
const dualServers: Effect.Effect<Peers, Error, Scope.Scope> = Effect.gen(function*() {
  const peers = new Set<Net.Socket>()
  let total = 0
  const onConnection = (socket: Net.Socket) => {
    total += 1
    peers.add(socket)
    socket.on("error", () => {})
    socket.on("end", () => socket.end())
    socket.on("close", () => peers.delete(socket))
  }
  const listen = (host: string, port: number) =>
    Effect.acquireRelease(
      Effect.callback<Net.Server, Error>((resume) => {
        const server = Net.createServer({ allowHalfOpen: true }, onConnection)
        server.once("error", (error) => resume(Effect.fail(error)))
        server.listen(port, host, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.callback<void>((resume) => {
          server.close(() => resume(Effect.void))
          for (const socket of peers) socket.destroy()
        })
    )
  const v4 = yield* listen("127.0.0.1", 0)
  const port = (v4.address() as Net.AddressInfo).port
  yield* listen("::1", port)
  return { port, open: () => [...peers], total: () => total }
})

describe("TcpClient happy eyeballs, attempts connecting together", () => {
  checkFdLeaks()

  it.effect("only the winner's connection stays open: every other attempt's is closed, even one that connected too", () =>
    Effect.gen(function*() {
      const servers = yield* dualServers
      const rounds = 40
      for (let round = 0; round < rounds; round++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const socket = yield* TcpClient.connect(`both.test:${servers.port}`, { ...T, happyEyeballs: "0 millis" })
          const local = socket.localAddress
          const localPort = local === undefined ? -1 : local.port
          yield* eventually(
            () => servers.open().length === 1,
            `round ${round}: one connection open (open: ${servers.open().length}, made: ${servers.total()})`
          )
          assert.strictEqual(servers.open()[0]?.remotePort, localPort, `round ${round}: the open one is the winner's`)
          yield* socket.close(T)
        }))
        yield* eventually(() => servers.open().length === 0, `round ${round}: every connection closed`)
      }
      // the second address was reached in some rounds, or this proved nothing
      assert.isAbove(servers.total(), rounds, "no round had a second attempt reach its server")
      yield* expectPoolIdle
    }).pipe(Effect.scoped, Effect.provide(resolvingTcp({ "both.test": ["127.0.0.1", "::1"] }))))
})
