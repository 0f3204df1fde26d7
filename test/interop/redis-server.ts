/**
 * A real `redis-server` for the interop tests: found on PATH (or not, and
 * then the tests skip), started on a free loopback port, stopped with the
 * scope; and the bits of RESP the tests speak to it.
 */
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import type { TcpClient, TcpError, TcpSocket, TcpStorage } from "../../src/index.ts"
import { closedPort, findOnPath, str, text } from "../helpers.ts"
import { spawnServer, withServer } from "./server-process.ts"

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

/**
 * Runs `body` against a fresh redis-server (`binary`, from
 * `findRedisServer`) on the test pool: every slot must be back afterwards,
 * and a hang fails after 40 s (`withServer`).
 *
 * @example
 * ```ts
 * withRedis(redisServer, (address) => Effect.flatMap(TcpClient.connect(address), (socket) => call(socket, "PING")))
 * ```
 */
export const withRedis = <A, E>(
  binary: string | undefined,
  body: (address: string) => Effect.Effect<A, E, TcpClient.TcpClient | TcpStorage.TcpStorage | Scope.Scope>
): Effect.Effect<A, E | Error> =>
  withServer(
    "redis",
    Effect.suspend(() => startRedis(binary ?? assert.fail("redis-server missing"))),
    (redis) => body(redis.address)
  )

/**
 * One RESP command: an array of bulk strings, as chunks for `sendv`.
 *
 * @example
 * ```ts
 * yield* socket.sendv([...command("SET", "key", bytes), ...command("GET", "key")])
 * ```
 */
export const command = (...args: ReadonlyArray<string | Uint8Array>): Array<Uint8Array> => {
  const chunks: Array<Uint8Array> = [text(`*${args.length}\r\n`)]
  for (const arg of args) {
    const body = typeof arg === "string" ? text(arg) : arg
    chunks.push(text(`$${body.length}\r\n`), body, text("\r\n"))
  }
  return chunks
}

/**
 * Sends one command and reads its one-line reply (`+PONG`, `:7`, `$5`, ...)
 * without the CRLF; 5 s for each, a reply line of at most 1 KiB.
 *
 * @example
 * ```ts
 * assert.strictEqual(yield* call(socket, "PING"), "+PONG")
 * ```
 */
export const call = (
  socket: TcpSocket.TcpSocket,
  ...args: ReadonlyArray<string>
): Effect.Effect<string, TcpError.SendError | TcpError.RecvUntilError> =>
  Effect.gen(function*() {
    yield* socket.sendv(command(...args), { timeout: "5 seconds" })
    return str(yield* socket.recvUntil("\r\n", { max: 1024, timeout: "5 seconds" }))
  })
