/**
 * The examples the README shows (`npm run chat`, `npm run redis`, `npm run
 * http`), run as their users run them: a child process on the repository's
 * Node 24, each ending by itself with exit code 0 and the lines the README
 * describes. The servers a demo starts (redis-server, python3's http.server)
 * must be gone once it exits: their ports refuse connections.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { TcpClient } from "../src/index.ts"
import { findRedisServer } from "./interop/redis-server.ts"
import { onPath, runProcess, sha256, TestTcp } from "./helpers.ts"

const node = fileURLToPath(new URL("../node_modules/.bin/node", import.meta.url))
const scriptPath = (name: string) => fileURLToPath(new URL(`../scratchpad/${name}`, import.meta.url))

/** Only a hang reaches this: each demo ends within a few seconds. */
const CHILD_LIMIT_MS = 60_000

/** `scratchpad/<name> --demo`, with `env` added to this process's environment. */
const demo = (name: string, env: Readonly<Record<string, string>> = {}) =>
  runProcess("env", [...Object.entries(env).map(([k, v]) => `${k}=${v}`), node, scriptPath(name), "--demo"], CHILD_LIMIT_MS)

/** Output lines, without the terminal's trailing spaces. */
const linesOf = (stdout: string): ReadonlyArray<string> => stdout.split("\n").map((line) => line.trimEnd())

/** Asserts every expected line is there, in this order (other lines may come between). */
const assertInOrder = (lines: ReadonlyArray<string>, expected: ReadonlyArray<string>) => {
  let from = 0
  for (const line of expected) {
    const at = lines.indexOf(line, from)
    assert.isAtLeast(at, 0, `${JSON.stringify(line)} after line ${from} of:\n${lines.join("\n")}`)
    from = at + 1
  }
}

/** Whether `address` refuses a connection: the demo's server is gone. */
const refuses = (address: string) =>
  TcpClient.connect(address, { timeout: "5 seconds" }).pipe(
    Effect.scoped,
    Effect.flip,
    Effect.map((error) => error._tag === "ConnRefused"),
    Effect.catch(() => Effect.succeed(false)),
    Effect.provide(TestTcp)
  )

/** The first capture of `pattern` in the output, or fails the test. */
const capture = (stdout: string, pattern: RegExp): string => {
  const found = pattern.exec(stdout)?.[1]
  assert.isDefined(found, `${pattern} in:\n${stdout}`)
  return found ?? ""
}

describe("scratchpad examples", () => {
  it.live("npm run chat: lines relayed, an overlong line answered and its client dropped, exit 0", () =>
    Effect.gen(function*() {
      const run = yield* demo("chat-server.ts")
      assert.strictEqual(run.code, 0, run.stdout + run.stderr)
      const lines = linesOf(run.stdout)
      assertInOrder(lines, [`alice -> "hello bob"`, `bob <- "[1] hello bob"`])
      assertInOrder(lines, [`bob -> "hi alice"`, `alice <- "[2] hi alice"`])
      assertInOrder(lines, [
        `carol -> "xxxxxxxxxxxxxxxxxxxxxxxx…" (1500 bytes)`,
        `carol <- "* line too long (max 1024 bytes): goodbye"`,
        "carol <- (end of stream)",
        "carol: closed"
      ])
      assert.include(lines, "server: client 3 sent a line longer than 1024 bytes")
      assert.include(lines, `alice <- "* client 3 dropped: line too long"`)
      assert.include(lines, `bob <- "* client 3 dropped: line too long"`)
      assertInOrder(lines, ["bob: done sending", "bob <- (end of stream)", "bob: closed", `alice <- "* client 2 left"`])
      assertInOrder(lines, ["alice: done sending", "alice <- (end of stream)", "alice: closed"])
      assert.strictEqual(run.stderr, "")
    }), 120_000)

  it("the chat and redis examples frame with messages, not a byte at a time", () => {
    for (const name of ["chat-server.ts", "redis-client.ts"]) {
      const source = readFileSync(scriptPath(name), "utf8")
      assert.include(source, "TcpMessage.crlf(", name)
      assert.notMatch(source, /new Uint8Array\(1\)|recvInto\(|recv\(1[,)]/, `${name} reads byte by byte`)
    }
  })

  const redisServer = findRedisServer("examples/redis")

  it.live.skipIf(redisServer === undefined)(
    "npm run redis: retries until redis-server listens, the commands through one pooled connection, exit 0",
    () =>
      Effect.gen(function*() {
        const run = yield* demo("redis-client.ts")
        assert.strictEqual(run.code, 0, run.stdout + run.stderr)
        const lines = linesOf(run.stdout)
        assert.include(lines, "gave up: bad argument, not retried: " +
          "InvalidArgument: connect 127.0.0.1:0: port must be an integer from 1 through 65535 (EINVAL)")
        assertInOrder(lines, [
          "> PING",
          "PONG",
          `> SET effect-tcp:greeting "hello, redis"`,
          "OK",
          "> GET effect-tcp:greeting",
          `"hello, redis"`,
          "> INCR effect-tcp:counter",
          "(integer) 1",
          "> INCR effect-tcp:greeting",
          "(error) ERR value is not an integer or out of range",
          "> GET effect-tcp:missing",
          "(nil)",
          "pool: 1 connection(s) created, 6 reuse(s), 0 discarded",
          "closed",
          "--- done"
        ])
        assert.match(run.stdout, /connected after \d+ attempt\(s\)/)
        const address = capture(run.stdout, /\(started \S+ on (127\.0\.0\.1:\d+)\)/)
        assert.isTrue(yield* refuses(address), `redis-server on ${address} stopped with the demo`)
      }),
    120_000
  )

  it.live("npm run redis without redis-server: the retries give up, exit 0", () =>
    Effect.gen(function*() {
      const run = yield* demo("redis-client.ts", { REDIS_SERVER: "redis-server-missing-for-test" })
      assert.strictEqual(run.code, 0, run.stdout + run.stderr)
      const lines = linesOf(run.stdout)
      assert.include(lines, "  (redis-server-missing-for-test is not on PATH: the retries will give up)")
      assert.include(lines, "  retry 5 in 1600 ms")
      assert.match(run.stdout, /gave up: nothing listens at 127\.0\.0\.1:\d+: ConnRefused/)
      assert.strictEqual(lines.at(-2), "--- gave up, as expected without a server")
    }), 120_000)

  /** The checks both HTTP servers pass: the file whole, by hash, and a 404. */
  const checkHttp = (stdout: string) => {
    const lines = linesOf(stdout)
    const written = capture(stdout, /^wrote hello\.bin: 1048576 bytes, sha256 ([0-9a-f]{64})$/m)
    assert.strictEqual(written, expectedFileHash, "the file the demo wrote")
    const got = capture(stdout, /^ {2}HTTP\/1\.[01] 200 OK: 1048576 bytes, sha256 ([0-9a-f]{64})$/m)
    assert.strictEqual(got, written, "the body's hash")
    assert.match(stdout, /^ {2}HTTP\/1\.[01] 404 .*: \d+ bytes, sha256 [0-9a-f]{64}$/m)
    assertInOrder(lines, ["the body's hash matches the file's", "--- done"])
    return capture(stdout, /^server: .* on (127\.0\.0\.1:\d+)$/m)
  }

  /** The demo's file, computed here independently: 1 MiB of (i * 31 + (i >>> 10)) & 0xff. */
  const expectedFileHash = (() => {
    const bytes = new Uint8Array(1024 * 1024)
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + (i >>> 10)) & 0xff
    return sha256(bytes)
  })()

  it.live.skipIf(onPath("python3") === undefined)("npm run http: GET from python3's http.server, checked by hash, exit 0", () =>
    Effect.gen(function*() {
      const run = yield* demo("http-client.ts")
      assert.strictEqual(run.code, 0, run.stdout + run.stderr)
      assert.match(run.stdout, /^server: python3 -m http\.server on 127\.0\.0\.1:\d+$/m)
      const address = checkHttp(run.stdout)
      assert.isTrue(yield* refuses(address), `python3's http.server on ${address} stopped with the demo`)
      assert.strictEqual(run.stderr, "")
    }), 120_000)

  it.live("npm run http without python3: GET from the script's own listener, checked by hash, exit 0", () =>
    Effect.gen(function*() {
      const run = yield* demo("http-client.ts", { PYTHON3: "python3-missing-for-test" })
      assert.strictEqual(run.code, 0, run.stdout + run.stderr)
      assert.include(linesOf(run.stdout), "  (python3-missing-for-test is not on PATH)")
      assert.match(run.stdout, /^server: a TcpListener of this script on 127\.0\.0\.1:\d+$/m)
      checkHttp(run.stdout)
      assert.strictEqual(run.stderr, "")
    }), 120_000)
})
