/**
 * A real `redis-server` for the interop tests: found on PATH (or not, and
 * then the tests skip), started on a free loopback port, stopped with the scope.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import * as Net from "node:net"
import { closedPort, findOnPath } from "../helpers.ts"

/**
 * `redis-server` on PATH, or undefined; when missing, prints why the tests of
 * `suite` (e.g. "interop/redis") are skipped.
 */
export const findRedisServer = (suite: string): string | undefined =>
  findOnPath("redis-server", suite, "install it, e.g. apt-get install redis-server")

/**
 * A redis-server on a free loopback port, without persistence, killed (and
 * waited for) with the scope. Ready once it accepts a connection.
 */
export const startRedis = (
  binary: string
): Effect.Effect<{ readonly port: number; readonly address: string }, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* closedPort
    const logs: Array<string> = []
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(binary, [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--protected-mode",
          "no",
          "--dir",
          "/tmp"
        ], { stdio: ["ignore", "pipe", "pipe"] })
        child.stdout.on("data", (d: Buffer) => logs.push(d.toString()))
        child.stderr.on("data", (d: Buffer) => logs.push(d.toString()))
        child.on("error", (e) => logs.push(`spawn error: ${e.message}`))
        return child
      }),
      (child) =>
        Effect.callback<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          const force = setTimeout(() => child.kill("SIGKILL"), 3000)
          child.once("close", () => {
            clearTimeout(force)
            resume(Effect.void)
          })
          child.kill("SIGTERM")
        })
    )
    // Ready when it accepts: polled, at most 200 tries 50 ms apart (bounded in count: a loaded
    // machine starting redis slowly only takes longer).
    for (let attempt = 0;; attempt++) {
      if (child.exitCode !== null) return yield* Effect.fail(new Error(`redis-server exited: ${logs.join("")}`))
      const accepted = yield* Effect.callback<boolean>((resume) => {
        const probe = Net.connect({ port, host: "127.0.0.1" })
        probe.once("connect", () => {
          probe.destroy()
          resume(Effect.succeed(true))
        })
        probe.once("error", () => {
          probe.destroy()
          resume(Effect.succeed(false))
        })
      })
      if (accepted) break
      if (attempt >= 200) return yield* Effect.fail(new Error(`redis-server not accepting on ${port}: ${logs.join("")}`))
      yield* Effect.sleep("50 millis")
    }
    return { port, address: `127.0.0.1:${port}` }
  })
