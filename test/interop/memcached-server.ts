/**
 * A real `memcached` for the interop tests: found on PATH (or not, and then
 * the tests skip), started on a free loopback port, stopped with the scope.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { closedPort, findOnPath } from "../helpers.ts"
import { spawnServer } from "./server-process.ts"

/**
 * `memcached` on PATH, or undefined; when missing, prints why the tests of
 * `suite` are skipped.
 *
 * @example
 * ```ts
 * const memcached = findMemcached("interop/memcached")
 * ```
 */
export const findMemcached = (suite: string): string | undefined =>
  findOnPath("memcached", suite, "install it, e.g. apt-get install memcached")

/**
 * A memcached on a free loopback port, TCP only (`-U 0`), with items up to
 * 2 MiB (`-I 2m`: the default 1 MiB limit counts the item's header too, so a
 * 1 MiB value would not fit), killed (SIGKILL) and waited for with the scope. Ready
 * once it accepts a connection.
 *
 * @example
 * ```ts
 * const { address } = yield* startMemcached(binary)
 * const socket = yield* TcpClient.connect(address)
 * ```
 */
export const startMemcached = (
  binary: string
): Effect.Effect<{ readonly port: number; readonly address: string }, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* closedPort
    // memcached refuses to run as root unless told which user to be.
    const asRoot = process.getuid?.() === 0 ? ["-u", "root"] : []
    yield* spawnServer({
      name: "memcached",
      binary,
      args: ["-l", "127.0.0.1", "-p", String(port), "-U", "0", "-I", "2m", "-m", "64", "-t", "2", ...asRoot],
      port,
      // It holds nothing worth a clean exit, and on SIGTERM it waits for its maintenance threads' 1 s ticks.
      stopSignal: "SIGKILL"
    })
    return { port, address: `127.0.0.1:${port}` }
  })
