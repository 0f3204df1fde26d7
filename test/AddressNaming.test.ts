/**
 * Addresses nobody could name: a connect or listen given a value whose
 * toString is not callable (or throws) fails InvalidArgument, never a
 * defect. fast-check found `{ toString: new Set(), "": [0n] }`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TcpClient, TcpListener } from "../src/index.ts"
import { failsWith, withTcp } from "./helpers.ts"

const unnameable: ReadonlyArray<unknown> = [
  { toString: new Set(), "": [0n] },
  { toString: () => { throw new Error("no name") }, n: 1n },
  Object.assign(Object.create(null), { big: 1n })
]

describe("unnameable addresses", () => {
  it.live("connect and listen fail InvalidArgument", () =>
    withTcp(Effect.gen(function*() {
      for (const address of unnameable) {
        const error = yield* failsWith(() => TcpClient.connect(address as never, { deadline: 0 }), "InvalidArgument")
        assert.isString(error.message)
        yield* failsWith(() => TcpListener.listen(address as never), "InvalidArgument")
      }
    })))
})
