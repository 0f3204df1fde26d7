/**
 * A real `redis-server` for the interop tests: found on PATH (or not, and
 * then the tests skip), started on a free loopback port, stopped with the scope.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { closedPort, findOnPath } from "../helpers.ts"
import { spawnServer } from "./server-process.ts"

/**
 * `redis-server` on PATH, or undefined; when missing, prints why the tests of
 * `suite` (e.g. "interop/redis") are skipped.
 */
export const findRedisServer = (suite: string): string | undefined =>
  findOnPath("redis-server", suite, "install it, e.g. apt-get install redis-server")

/**
 * Starts `binary` as a redis-server on 127.0.0.1 with `args` (its ports and
 * the like) and no persistence, its working directory `dir`; ready once it
 * accepts on `port`, or once `ready` says so. Killed (and waited for) with
 * the scope.
 *
 * @example
 * ```ts
 * const port = yield* closedPort
 * yield* spawnRedis({ binary, port, args: ["--port", String(port)], dir: "/tmp" })
 * ```
 */
export const spawnRedis = (options: {
  readonly binary: string
  readonly port: number
  readonly args: ReadonlyArray<string>
  readonly dir: string
  readonly ready?: Effect.Effect<boolean> | undefined
}): Effect.Effect<void, Error, Scope.Scope> =>
  spawnServer({
    name: "redis-server",
    binary: options.binary,
    args: [
      ...options.args,
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--protected-mode",
      "no",
      "--dir",
      options.dir
    ],
    port: options.port,
    ready: options.ready
  })

/**
 * A redis-server on a free loopback port, without persistence, killed (and
 * waited for) with the scope. Ready once it accepts a connection.
 *
 * @example
 * ```ts
 * const redis = yield* startRedis(binary)
 * const socket = yield* TcpClient.connect(redis.address)
 * ```
 */
export const startRedis = (
  binary: string
): Effect.Effect<{ readonly port: number; readonly address: string }, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* closedPort
    yield* spawnRedis({ binary, port, args: ["--port", String(port)], dir: "/tmp" })
    return { port, address: `127.0.0.1:${port}` }
  })
