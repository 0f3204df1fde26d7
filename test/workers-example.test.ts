/**
 * `npm run workers` (scratchpad/workers.ts --demo) as its users run it: a
 * child process on the repository's Node 24 that starts 2 worker threads
 * sharing one port with `reusePort`, sends 64 clients at it and ends by
 * itself with exit code 0. The kernel spreads the 64 connections over both
 * workers' listeners, so each must have answered some (all on one worker
 * has odds of 2^-63), and every client got its answer.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { runProcess } from "./helpers.ts"

const node = fileURLToPath(new URL("../node_modules/.bin/node", import.meta.url))
const script = fileURLToPath(new URL("../scratchpad/workers.ts", import.meta.url))

/** Only a hang reaches this: the demo ends within a few seconds. */
const CHILD_LIMIT_MS = 60_000

describe("scratchpad/workers.ts", () => {
  it.live.skipIf(process.platform !== "linux")("--demo: 64 clients answered, by both workers, exit 0", () =>
    Effect.gen(function*() {
      const run = yield* runProcess(node, [script, "--demo"], CHILD_LIMIT_MS)
      assert.strictEqual(run.code, 0, run.stdout + run.stderr)
      assert.strictEqual(run.stderr, "")
      assert.match(run.stdout, /^2 workers listening on 127\.0\.0\.1:\d+ \(reusePort\)$/m)
      assert.match(run.stdout, /^client 1 <- "worker [12] \(thread \d+\): hello from client 1"$/m)
      const summary = /^(\d+) clients answered by worker 1: (\d+), worker 2: (\d+)$/m.exec(run.stdout)
      assert.isNotNull(summary, run.stdout)
      const [clients, first, second] = (summary ?? []).slice(1).map(Number)
      assert.strictEqual(clients, 64)
      assert.strictEqual((first ?? 0) + (second ?? 0), 64, run.stdout)
      assert.isAbove(first ?? 0, 0, `worker 1 answered no one:\n${run.stdout}`)
      assert.isAbove(second ?? 0, 0, `worker 2 answered no one:\n${run.stdout}`)
    }), 120_000)
})
