/**
 * Servers nobody here wrote, run as child processes by the interop tests:
 * found on PATH by `findOnPath` (../helpers.ts; when missing, the tests
 * skip with the reason printed), started on a loopback port, ready once they
 * accept a connection, killed (and waited for) with the scope.
 */
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Net from "node:net"
import type { TcpClient, TcpStorage } from "../../src/index.ts"
import { pollUntil, withTcp } from "../helpers.ts"

/** Whether something accepts connections on 127.0.0.1:`port` right now. */
const accepts = (port: number): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const probe = Net.connect({ port, host: "127.0.0.1" })
    const settle = (accepted: boolean) => () => {
      probe.destroy()
      resume(Effect.succeed(accepted))
    }
    probe.once("connect", settle(true))
    probe.once("error", settle(false))
    return Effect.sync(() => probe.destroy())
  })

/** Whether `child` has exited (or never started). */
const ended = (child: ChildProcess, spawnFailed: boolean): boolean =>
  spawnFailed || child.exitCode !== null || child.signalCode !== null

/**
 * Runs `binary` with `args` as a server that should listen on
 * 127.0.0.1:`port`; succeeds once it accepts a connection, or once `ready`
 * says so when given (e.g. it answers over TLS) (polled: at most `polls`
 * probes, about 10 ms apart), fails with its output if it exits first or
 * never becomes ready. With the scope it gets `stopSignal` (SIGTERM
 * unless told; SIGKILL 3 s later if still running) and is waited for, so
 * its pipes are closed when the scope has ended.
 *
 * @example
 * ```ts
 * const port = yield* closedPort
 * yield* spawnServer({ name: "memcached", binary, args: ["-l", "127.0.0.1", "-p", String(port)], port })
 * ```
 */
export const spawnServer = (options: {
  readonly name: string
  readonly binary: string
  readonly args: ReadonlyArray<string>
  readonly port: number
  readonly ready?: Effect.Effect<boolean> | undefined
  readonly polls?: number | undefined
  readonly stopSignal?: NodeJS.Signals | undefined
}): Effect.Effect<void, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const output: Array<string> = []
    let spawnFailed = false
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(options.binary, options.args, { stdio: ["ignore", "pipe", "pipe"] })
        child.stdout?.on("data", (d: Buffer) => output.push(d.toString()))
        child.stderr?.on("data", (d: Buffer) => output.push(d.toString()))
        child.on("error", (e) => {
          spawnFailed = child.pid === undefined
          output.push(`spawn error: ${e.message}`)
        })
        return child
      }),
      (child) =>
        Effect.callback<void>((resume) => {
          if (child.pid === undefined || ended(child, false)) return resume(Effect.void)
          const force = setTimeout(() => child.kill("SIGKILL"), 3000)
          child.once("close", () => {
            clearTimeout(force)
            resume(Effect.void)
          })
          child.kill(options.stopSignal ?? "SIGTERM")
        })
    )
    const ready = yield* pollUntil(
      Effect.suspend(() =>
        ended(child, spawnFailed)
          ? Effect.fail(new Error(`${options.name} exited before accepting: ${output.join("")}`))
          : options.ready ?? accepts(options.port)
      ),
      options.polls ?? 1000
    )
    if (!ready) {
      return yield* Effect.fail(new Error(`${options.name} not ready on port ${options.port}: ${output.join("")}`))
    }
    // It may have died right after a probe found the port taken by someone else.
    if (ended(child, spawnFailed)) return yield* Effect.fail(new Error(`${options.name} exited: ${output.join("")}`))
  })

type Tcp = TcpClient.TcpClient | TcpStorage.TcpStorage

/**
 * Runs `start` (the server a test talks to, and anything it needs) and then
 * `body` with what it gave, in one scope on the test pool (`withTcp`: every
 * slot must be back afterwards). The 40 s bound only turns a hang into a
 * failure saying which `what` test it was.
 *
 * @example
 * ```ts
 * withServer("memcached", startMemcached(binary), (server) =>
 *   Effect.gen(function*() {
 *     const socket = yield* TcpClient.connect(server.address)
 *   }))
 * ```
 */
export const withServer = <S, A, E>(
  what: string,
  start: Effect.Effect<S, Error, Tcp | Scope.Scope>,
  body: (server: S) => Effect.Effect<A, E, Tcp | Scope.Scope>
): Effect.Effect<A, E | Error> =>
  withTcp(Effect.flatMap(start, body)).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(40),
      orElse: () => Effect.fail(new Error(`${what} test did not finish within 40 s`))
    })
  )
