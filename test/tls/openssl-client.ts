/**
 * `openssl s_client` as a TLS client nobody here wrote: it connects to a
 * loopback port, sends what the test writes to its stdin, and collects on
 * stdout what it reads back. Killed (and waited for) with the scope.
 *
 * It runs with `-quiet -brief -no_ign_eof -nocommands`: stdout carries only
 * the application data; stderr carries the connection summary ("CONNECTION
 * ESTABLISHED", "Protocol version: TLSv1.3", "Verification: OK", …) and any
 * error; closing stdin makes it send close_notify, close and exit; lines
 * starting with Q, R or k are data, not commands.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"

/** Where and how `opensslClient` connects. */
export interface OpensslClientOptions {
  /** The port on `host`. */
  readonly port: number
  /** The address to connect to: 127.0.0.1 unless told (`::1` works too). */
  readonly host?: string
  /** The name sent as SNI and verified against the certificate: "localhost" unless told. */
  readonly serverName?: string
  /**
   * The CA file to verify the server with. When given, a certificate that
   * does not verify (chain, name or dates) makes the client exit with code 1
   * before sending anything; when not, the client connects to any certificate.
   */
  readonly caFile?: string
  /** A client certificate and its key, for servers that request one. */
  readonly certFile?: string
  readonly keyFile?: string
  /** ALPN protocols to offer, e.g. ["h2", "http/1.1"]. */
  readonly alpn?: ReadonlyArray<string>
  /** More `s_client` arguments, appended as given (e.g. ["-tls1_2"]). */
  readonly args?: ReadonlyArray<string>
}

/** How the client process ended. */
export interface OpensslExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** Everything it printed on stdout (the application data it read). */
  readonly stdout: string
  /** Everything it printed on stderr (summary, verification result, errors). */
  readonly stderr: string
}

/** A running `openssl s_client`. */
export interface OpensslClient {
  /** The full command line, for messages. */
  readonly command: string
  /** What it has read from the server so far (its stdout). */
  readonly stdout: () => string
  /** Its stderr so far. */
  readonly stderr: () => string
  /** Writes `data` to its stdin, which it sends to the server once the handshake is done. */
  readonly send: (data: string | Uint8Array) => Effect.Effect<void, Error>
  /** Closes its stdin: it sends close_notify, closes the connection and exits. */
  readonly end: Effect.Effect<void>
  /**
   * Waits until its stdout contains `expected` (or satisfies it, as a
   * predicate) and returns the stdout. Fails if the client exits first or
   * after `timeoutMs` (10 s unless told), with its stdout and stderr.
   */
  readonly waitForOutput: (
    expected: string | ((stdout: string) => boolean),
    timeoutMs?: number
  ) => Effect.Effect<string, Error>
  /**
   * Waits until the handshake is done and its summary printed, up to the
   * verification result ("Verification: OK", or "Verification error: …" when
   * no `caFile` makes it fatal), so `stderr()` then holds the protocol,
   * cipher and peer certificate. Fails if the client exits first (e.g. on a
   * certificate it rejects) or after `timeoutMs` (10 s unless told).
   */
  readonly waitForHandshake: (timeoutMs?: number) => Effect.Effect<void, Error>
  /** Waits until it has exited (10 s unless told, then fails) and returns how. */
  readonly exit: (timeoutMs?: number) => Effect.Effect<OpensslExit, Error>
}

const DEFAULT_WAIT_MS = 10_000

/**
 * Starts `openssl s_client` (the `openssl` of `findOpenssl`) against
 * `options.host:options.port`; it is killed with SIGKILL (and waited for)
 * when the scope ends if it is still running.
 *
 * @example
 * ```ts
 * const client = yield* opensslClient(openssl, { port: listener.port, caFile: certs.ca.certFile })
 * yield* client.send("hello\n")
 * yield* client.waitForOutput("hello\n")
 * yield* client.end
 * const { code } = yield* client.exit()
 * ```
 */
export const opensslClient = (
  openssl: string,
  options: OpensslClientOptions
): Effect.Effect<OpensslClient, never, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? "127.0.0.1"
    const serverName = options.serverName ?? "localhost"
    const target = host.includes(":") ? `[${host}]:${options.port}` : `${host}:${options.port}`
    const args = [
      "s_client",
      "-connect",
      target,
      "-servername",
      serverName,
      "-quiet",
      "-brief",
      "-no_ign_eof",
      "-nocommands",
      ...(options.caFile === undefined ?
        [] :
        ["-CAfile", options.caFile, "-verify_return_error", "-verify_hostname", serverName]),
      ...(options.certFile === undefined ? [] : ["-cert", options.certFile]),
      ...(options.keyFile === undefined ? [] : ["-key", options.keyFile]),
      ...(options.alpn === undefined ? [] : ["-alpn", options.alpn.join(",")]),
      ...(options.args ?? [])
    ]
    const command = `${openssl} ${args.join(" ")}`
    let stdout = ""
    let stderr = ""
    let ended: { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined
    // Every wait registers a check here; each output chunk or the exit runs them all.
    const watchers = new Set<() => void>()
    const notify = () => {
      for (const watcher of [...watchers]) watcher()
    }
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(openssl, args, { stdio: ["pipe", "pipe", "pipe"] })
        child.stdout.setEncoding("utf8")
        child.stderr.setEncoding("utf8")
        child.stdout.on("data", (chunk: string) => {
          stdout += chunk
          notify()
        })
        child.stderr.on("data", (chunk: string) => {
          stderr += chunk
          notify()
        })
        // Writing to a client that already exited is an EPIPE here, not a crash of the test process.
        child.stdin.on("error", () => {})
        child.once("error", (e) => {
          stderr += `spawn error: ${e.message}\n`
          ended ??= { code: null, signal: null }
          notify()
        })
        child.once("close", (code, signal) => {
          ended ??= { code, signal }
          notify()
        })
        return child
      }),
      (child) =>
        Effect.callback<void>((resume) => {
          if (ended !== undefined || child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          // Bounded: a SIGKILLed process is reaped at once; the timer only guards a lost event.
          const timer = setTimeout(() => resume(Effect.void), 3000)
          child.once("close", () => {
            clearTimeout(timer)
            resume(Effect.void)
          })
          child.kill("SIGKILL")
        })
    )
    const described = () => `${command}\n--- stdout:\n${stdout}\n--- stderr:\n${stderr}`
    const waitUntil = <A>(check: () => A | undefined, what: string, timeoutMs: number): Effect.Effect<A, Error> =>
      Effect.callback<A, Error>((resume) => {
        const stop = () => {
          clearTimeout(timer)
          watchers.delete(attempt)
        }
        const attempt = () => {
          const value = check()
          if (value !== undefined) {
            stop()
            resume(Effect.succeed(value))
          } else if (ended !== undefined) {
            stop()
            resume(Effect.fail(
              new Error(`s_client exited (code ${ended.code}, signal ${ended.signal}) before ${what}: ${described()}`)
            ))
          }
        }
        const timer = setTimeout(() => {
          stop()
          resume(Effect.fail(new Error(`gave up after ${timeoutMs} ms waiting until ${what}: ${described()}`)))
        }, timeoutMs)
        watchers.add(attempt)
        attempt()
        return Effect.sync(stop)
      })
    const client: OpensslClient = {
      command,
      stdout: () => stdout,
      stderr: () => stderr,
      send: (data) =>
        Effect.callback<void, Error>((resume) => {
          child.stdin.write(data, (error) =>
            resume(
              error === null || error === undefined ?
                Effect.void :
                Effect.fail(new Error(`cannot write to s_client: ${error.message}: ${described()}`))
            ))
        }),
      end: Effect.sync(() => {
        child.stdin.end()
      }),
      waitForOutput: (expected, timeoutMs = DEFAULT_WAIT_MS) => {
        const holds = typeof expected === "string" ? (out: string) => out.includes(expected) : expected
        const what = typeof expected === "string" ? `its stdout contains ${JSON.stringify(expected)}` : "its stdout matches"
        return waitUntil(() => holds(stdout) ? stdout : undefined, what, timeoutMs)
      },
      waitForHandshake: (timeoutMs = DEFAULT_WAIT_MS) =>
        waitUntil(
          () => /^Verification[^\n]*\n/m.test(stderr) ? true : undefined,
          "the handshake is done",
          timeoutMs
        ).pipe(Effect.asVoid),
      exit: (timeoutMs = DEFAULT_WAIT_MS) =>
        waitUntil(
          () => ended === undefined ? undefined : { ...ended, stdout, stderr },
          "it exits",
          timeoutMs
        )
    }
    return client
  })
