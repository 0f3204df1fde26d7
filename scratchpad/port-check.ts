/**
 * A port checker: connects to each address, several at a time, and prints
 * one line per address: `open`, or how the connect failed (the error's tag,
 * errno and message).
 *
 *     npm run portcheck -- [--timeout MS] ADDRESS...
 *     npm run portcheck -- 127.0.0.1:22 127.0.0.1:6379 [::1]:80 nohostport localhost:1
 *     npm run portcheck -- --timeout 500 127.0.0.1:22
 *     npm run portcheck                  # a default list, on loopback only
 *     npm run portcheck -- --help
 *     npx node scratchpad/port-check.ts ...   # the same, outside npm
 *
 * Addresses are effect-tcp's: `host:port` or `[v6]:port`; names resolve
 * within the same timeout. Each connect gets `--timeout` ms (default 1000),
 * at most 8 run at once, and the lines come out in the order given. The
 * exit code is 1 when an address given on the command line is not open, 2
 * for a usage error (an unknown option, a bad `--timeout`). Every message
 * about an address, a bad port included, is the library's own
 * `InvalidArgument`: this script does not check addresses itself.
 *
 * With no address it checks, on loopback: a listener of its own (open), a
 * port nothing listens on (ConnRefused), port 0 (InvalidArgument), the same
 * closed port on ::1 (ConnRefused, or AddrNotAvail without IPv6), and a
 * string that is not an address (InvalidArgument).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Duration, Effect } from "effect"
import { TcpClient, TcpError, TcpListener, TcpNode } from "../src/index.ts"

/** How many connects run at once. */
const CONCURRENCY = 8

const usage = "usage: npm run portcheck -- [--timeout MS] [HOST:PORT | [V6]:PORT]..."

const help = `${usage}

Connects to each address, ${CONCURRENCY} at a time, and prints one line per address in
the order given: open, or a verdict with the error's tag, errno and message.
With no address it checks a default list on loopback.

  --timeout MS   each connect's deadline, in milliseconds (default 1000)
  -h, --help     print this and exit
  --             what follows is addresses, even if it starts with -

Exit code: 0 when every address given is open, 1 when one is not, 2 for a
usage error.`

/** What one check found. */
type Outcome =
  | { readonly _tag: "Open"; readonly address: string }
  | {
    readonly _tag: "Failed"
    readonly address: string
    /** A one-word reading of the error, as port scanners put it. */
    readonly verdict: "closed" | "filtered" | "unreachable" | "invalid" | "error"
    readonly error: TcpError.ConnectError
  }

/**
 * Connects to `address` within `timeout` and closes again. Every error
 * `connect` can fail with becomes an `Outcome`, one branch per tag: the
 * type checks that none is missing and none is extra.
 */
const check = Effect.fn("portcheck.check")(function*(address: string, timeout: Duration.Duration) {
  const failed = (verdict: Extract<Outcome, { _tag: "Failed" }>["verdict"]) => (error: TcpError.ConnectError) =>
    Effect.succeed<Outcome>({ _tag: "Failed", address, verdict, error })
  return yield* TcpClient.connect(address, { timeout }).pipe(
    Effect.as<Outcome>({ _tag: "Open", address }),
    Effect.scoped, // the socket closes as soon as we know
    Effect.catchTags({
      ConnRefused: failed("closed"),
      TimedOut: failed("filtered"),
      HostUnreach: failed("unreachable"),
      NetUnreach: failed("unreachable"),
      NetDown: failed("unreachable"),
      AccessDenied: failed("unreachable"),
      AddrNotAvail: failed("unreachable"),
      InvalidArgument: failed("invalid"),
      ConnReset: failed("error"),
      TooManyOpenFiles: failed("error"),
      SystemFileLimit: failed("error"),
      OutOfMemory: failed("error"),
      SystemError: failed("error")
    })
  )
})

const render = (outcome: Outcome, width: number): string => {
  const address = outcome.address.padEnd(width)
  return outcome._tag === "Open"
    ? `${address}  open`
    : `${address}  ${outcome.verdict.padEnd(11)}  ${outcome.error._tag.padEnd(15)}  ${outcome.error.errno.padEnd(12)}  ${outcome.error.message}`
}

/** Checks every address, at most `CONCURRENCY` at once, and prints them in order. */
const checkAll = (addresses: ReadonlyArray<string>, timeout: Duration.Duration) =>
  Effect.gen(function*() {
    yield* Console.log(`checking ${addresses.length} address(es), timeout ${Duration.format(timeout)}, ${CONCURRENCY} at a time`)
    const outcomes = yield* Effect.forEach(addresses, (address) => check(address, timeout), { concurrency: CONCURRENCY })
    const width = Math.max(...addresses.map((a) => a.length))
    for (const outcome of outcomes) yield* Console.log(render(outcome, width))
    return outcomes
  })

/** A loopback port nothing listens on: listen on port 0, note the port, stop. */
const closedPort = Effect.scoped(Effect.map(TcpListener.listen("127.0.0.1:0"), (l) => l.port))

/** The default list, on loopback only, around a listener of our own. */
const defaults = Effect.gen(function*() {
  const listener = yield* TcpListener.listen("127.0.0.1:0")
  yield* Effect.forkScoped(listener.pipe(TcpListener.serve(() => Effect.void))) // accept, then close
  const closed = yield* closedPort
  return [
    `127.0.0.1:${listener.port}`,
    `127.0.0.1:${closed}`,
    "127.0.0.1:0",
    `[::1]:${closed}`,
    `localhost:${closed}`,
    "nohostport"
  ]
})

/**
 * `--timeout MS` / `--timeout=MS` and the addresses; `help`; or a usage
 * error. An argument that starts with `-` is an option: an unknown one is
 * an error, not an address (`--` ends the options).
 */
const parseArgs = (args: ReadonlyArray<string>) => {
  let timeout = Duration.seconds(1)
  const addresses: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? ""
    if (arg === "--") {
      addresses.push(...args.slice(i + 1))
      break
    }
    if (arg === "--help" || arg === "-h") return { help } as const
    if (arg === "--timeout" || arg.startsWith("--timeout=")) {
      const value = arg === "--timeout" ? args[++i] : arg.slice("--timeout=".length)
      if (value === undefined || !/^\d{1,7}$/.test(value)) {
        return { error: `--timeout needs a number of milliseconds, got ${JSON.stringify(value ?? "")}\n${usage}` } as const
      }
      timeout = Duration.millis(Number(value))
    } else if (arg.startsWith("-")) {
      return { error: `unknown option ${JSON.stringify(arg)}\n${usage}` } as const
    } else {
      addresses.push(arg)
    }
  }
  return { timeout, addresses } as const
}

const main = Effect.gen(function*() {
  const parsed = parseArgs(process.argv.slice(2))
  if ("help" in parsed) {
    yield* Console.log(parsed.help)
    return
  }
  if ("error" in parsed) {
    yield* Console.error(parsed.error)
    process.exitCode = 2
    return
  }
  if (parsed.addresses.length > 0) {
    const outcomes = yield* checkAll(parsed.addresses, parsed.timeout)
    if (outcomes.some((o) => o._tag !== "Open")) process.exitCode = 1
    return
  }
  yield* Console.log("no address given: checking a default list on loopback")
  yield* checkAll(yield* defaults, parsed.timeout)
}).pipe(Effect.scoped, Effect.provide(TcpNode.layer))

NodeRuntime.runMain(main)
