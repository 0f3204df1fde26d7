/**
 * A bad port reads the same whichever check catches it: the library's own
 * (port 0 on connect) or Effect's address parser (out of range, not a number).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TcpClient, TcpListener } from "../src/index.ts"
import { failsWith, withTcp } from "./helpers.ts"

const connectRange = "port must be an integer from 1 through 65535"
const listenRange = "port must be an integer from 0 through 65535"

describe("bad ports", () => {
  it.live("connect: port 0, out of range, negative, fractional, not a number", () =>
    withTcp(Effect.gen(function*() {
      const inputs = ["127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:-1", "127.0.0.1:1.5", "127.0.0.1:x", {
        host: "127.0.0.1",
        port: 70000
      }]
      for (const input of inputs) {
        const error = yield* failsWith(() => TcpClient.connect(input), "InvalidArgument", JSON.stringify(input))
        assert.include(error.message, connectRange, JSON.stringify(input))
      }
    })))

  it.live("listen: out of range and not a number (0 picks a port)", () =>
    withTcp(Effect.gen(function*() {
      for (const input of ["127.0.0.1:70000", "127.0.0.1:x"]) {
        const error = yield* failsWith(() => TcpListener.listen(input), "InvalidArgument", input)
        assert.include(error.message, listenRange, input)
      }
    })))

  it.live("connect's localPort", () =>
    withTcp(Effect.gen(function*() {
      const error = yield* failsWith(
        () => TcpClient.connect("127.0.0.1:1", { localPort: 70000 }),
        "InvalidArgument",
        "localPort"
      )
      assert.include(error.message, "localPort must be an integer from 0 through 65535")
    })))
})
