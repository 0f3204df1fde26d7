/**
 * `scratchpad/port-check.ts` as its users run it (`npm run portcheck -- ...`):
 * a child process on the repository's Node 24, each bounded in time. `--help`
 * is help (exit 0), an unknown option is a usage error (exit 2) rather than
 * an address, and each address's line carries the library's own error
 * message, whatever the library's wording is.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { TcpClient } from "../src/index.ts"
import { closedPort, echoServer, runProcess, TestTcp } from "./helpers.ts"

const node = fileURLToPath(new URL("../node_modules/.bin/node", import.meta.url))
const script = fileURLToPath(new URL("../scratchpad/port-check.ts", import.meta.url))

/** Only a hang reaches this: the script exits in about a second. */
const CHILD_LIMIT_MS = 45_000

const portcheck = (...args: ReadonlyArray<string>) => runProcess(node, [script, ...args], CHILD_LIMIT_MS)

/** The message the library itself gives for connecting to `address`. */
const libraryMessage = (address: string) =>
  TcpClient.connect(address).pipe(
    Effect.scoped,
    Effect.flip,
    Effect.map((error) => error.message),
    Effect.provide(TestTcp)
  )

/** The output line for `address`: the address, padded, then what was found. */
const lineFor = (stdout: string, address: string): string | undefined =>
  stdout.split("\n").find((line) => line.startsWith(`${address} `))

describe("scratchpad/port-check.ts", () => {
  it.live("--help and -h print the usage on stdout and exit 0", () =>
    Effect.gen(function*() {
      for (const flag of ["--help", "-h"]) {
        const run = yield* portcheck(flag)
        assert.strictEqual(run.code, 0, `${flag}: ${run.stderr}`)
        assert.isTrue(run.stdout.startsWith("usage: npm run portcheck -- [--timeout MS]"), run.stdout)
        assert.include(run.stdout, "--timeout MS")
        assert.strictEqual(run.stderr, "")
      }
    }), 120_000)

  it.live("an unknown option is a usage error (exit 2), not an address to check", () =>
    Effect.gen(function*() {
      for (const flag of ["--bogus", "-x", "--timeout-ms=5"]) {
        const run = yield* portcheck(flag, "127.0.0.1:1")
        assert.strictEqual(run.code, 2, `${flag}: ${run.stdout}${run.stderr}`)
        assert.include(run.stderr, `unknown option ${JSON.stringify(flag)}`)
        assert.include(run.stderr, "usage: npm run portcheck --")
        assert.notInclude(run.stdout, "checking", "nothing is checked")
      }
    }), 120_000)

  it.live("a --timeout that is not a number of milliseconds is a usage error (exit 2)", () =>
    Effect.gen(function*() {
      const run = yield* portcheck("--timeout", "soon", "127.0.0.1:1")
      assert.strictEqual(run.code, 2, run.stdout + run.stderr)
      assert.include(run.stderr, "--timeout needs a number of milliseconds")
      assert.notInclude(run.stdout, "checking")
    }), 60_000)

  it.live("one line per address, in order, with the library's messages; exit 1 when one is not open", () =>
    Effect.gen(function*() {
      const open = yield* echoServer()
      const closed = `127.0.0.1:${yield* closedPort}`
      const invalid = ["127.0.0.1:0", "127.0.0.1:70000", "nohostport"]
      const run = yield* portcheck("--timeout", "5000", open.address, closed, ...invalid)
      assert.strictEqual(run.code, 1, run.stdout + run.stderr)
      const lines = run.stdout.split("\n").filter((line) => /^\S+\s{2}/.test(line))
      assert.deepStrictEqual(lines.map((line) => line.split(" ")[0]), [open.address, closed, ...invalid])
      assert.match(lineFor(run.stdout, open.address) ?? "", /\s{2}open$/)
      assert.match(lineFor(run.stdout, closed) ?? "", /\s{2}closed\s+ConnRefused\s+ECONNREFUSED\s/)
      for (const address of invalid) {
        const line = lineFor(run.stdout, address) ?? ""
        assert.match(line, /\s{2}invalid\s+InvalidArgument\s+EINVAL\s/)
        assert.isTrue(line.endsWith(yield* libraryMessage(address)), `${line} ends with the library's message`)
      }
    }).pipe(Effect.scoped), 60_000)

  it.live("every address open: exit 0", () =>
    Effect.gen(function*() {
      const open = yield* echoServer()
      const run = yield* portcheck(open.address)
      assert.strictEqual(run.code, 0, run.stdout + run.stderr)
      assert.match(lineFor(run.stdout, open.address) ?? "", /\s{2}open$/)
    }).pipe(Effect.scoped), 60_000)

  it.live("-- ends the options: what follows is an address, even with a leading -", () =>
    Effect.gen(function*() {
      const run = yield* portcheck("--", "-x")
      assert.strictEqual(run.code, 1, run.stdout + run.stderr)
      assert.match(lineFor(run.stdout, "-x") ?? "", /\s{2}invalid\s+InvalidArgument\s+EINVAL\s/)
      assert.isUndefined(lineFor(run.stdout, "--"), "-- itself is not an address")
    }), 60_000)
})
