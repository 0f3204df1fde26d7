/**
 * A tiny Redis client: RESP through a `TcpClient.pool`, with the first
 * connect retried on `TimedOut` and `ConnRefused` only.
 *
 *     node scratchpad/redis-client.ts [HOST:PORT]   # default 127.0.0.1:6379
 *     node scratchpad/redis-client.ts --demo        # `npm run redis`: self-contained
 *
 * It sends PING, SET, GET, INCR (twice, once on a non-integer to get an error
 * reply) and a GET of a missing key, and prints each request and reply the
 * way redis-cli does, then the pool's counters.
 *
 * The connect is retried with exponential backoff (100 ms, 200 ms, ... at most
 * 5 retries, about 3 s in all) while the error is `TimedOut` or
 * `ConnRefused`: a server that is still starting. Every other error
 * (`InvalidArgument` for a bad address, `AccessDenied`, `HostUnreach`, ...)
 * fails at once: waiting would not change it.
 *
 * Each command borrows a connection from the pool for its own scope: when
 * the reply was read whole, the connection goes back and the next command
 * reuses it; a command that failed half-way leaves it unclean, and the pool
 * closes it instead.
 *
 * RESP framing: a reply starts with a header line (`+OK`, `:42`, `$5`, ...)
 * received as a CRLF-terminated message (`TcpMessage.crlf`, which finds the
 * CRLF in the bytes already received, bounded by `MAX_HEADER`); a bulk
 * string's body then comes from the same socket with one exact
 * `recv(length + 2)`, CRLF included, as the header announced it.
 *
 * `--demo` needs no Redis running: it picks a free loopback port, starts the
 * client (which fails with `ConnRefused` and retries), then starts
 * `redis-server` on that port as a child process, so the client's retries
 * end in a connection; the child is stopped at the end. Without
 * `redis-server` on PATH (or `REDIS_SERVER=/path/to/redis-server`) it says so
 * and shows the retries giving up against the closed port. It also shows
 * that an `InvalidArgument` (port 0) is not retried.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Duration, Effect, Fiber, Ref, Schedule, Schema } from "effect"
import { ChildProcess } from "effect/process"
import { Deadline, TcpClient, TcpError, TcpListener, TcpMessage, TcpNode } from "../src/index.ts"

// ---------------------------------------------------------------------------
// RESP

/** The server broke the protocol (or sent more than this client accepts). */
class RespError extends Schema.TaggedError<RespError>()("RespError", { message: Schema.String }) {}

/** A reply: the RESP2 types these commands can produce. */
type Reply =
  | { readonly _tag: "Simple"; readonly value: string }
  | { readonly _tag: "Error"; readonly message: string }
  | { readonly _tag: "Integer"; readonly value: bigint }
  | { readonly _tag: "Bulk"; readonly value: Uint8Array | null }

/** Longest header line accepted (`+...`, `-...`, `:...`, `$...`); longer is `MessageTooLarge`. */
const MAX_HEADER = 4096
/** Largest bulk string accepted. */
const MAX_BULK = 1024 * 1024
const CR = 0x0d
const LF = 0x0a

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A command as an array of bulk strings, one chunk per piece, for `sendv`. */
const encode = (args: ReadonlyArray<string>): ReadonlyArray<Uint8Array> =>
  args.reduce<Array<Uint8Array>>(
    (chunks, arg) => {
      const bytes = encoder.encode(arg)
      chunks.push(encoder.encode(`$${bytes.length}\r\n`), bytes, encoder.encode("\r\n"))
      return chunks
    },
    [encoder.encode(`*${args.length}\r\n`)]
  )

const parseInteger = (text: string) =>
  /^-?\d{1,19}$/.test(text)
    ? Effect.succeed(BigInt(text))
    : Effect.fail(new RespError({ message: `not an integer: ${JSON.stringify(text)}` }))

/**
 * One reply: its header line as a CRLF message, then for a bulk string
 * exactly the bytes it announced, read from the socket beneath the messages
 * (libdill's `crlf_detach`: exact reads continue where the line stopped).
 */
const readReply = (lines: TcpMessage.MessageSocket, deadline: Deadline.Deadline) =>
  Effect.gen(function*() {
    const header = decoder.decode(yield* lines.recv({ deadline }))
    const rest = header.slice(1)
    switch (header[0]) {
      case "+":
        return { _tag: "Simple", value: rest } satisfies Reply
      case "-":
        return { _tag: "Error", message: rest } satisfies Reply
      case ":":
        return { _tag: "Integer", value: yield* parseInteger(rest) } satisfies Reply
      case "$": {
        const length = yield* parseInteger(rest)
        if (length === -1n) return { _tag: "Bulk", value: null } satisfies Reply
        if (length < 0n || length > BigInt(MAX_BULK)) {
          return yield* new RespError({ message: `bulk length ${length} outside 0..${MAX_BULK}` })
        }
        const n = Number(length)
        const body = yield* lines.socket.recv(n + 2, { deadline }) // the body and its CRLF, exactly
        if (body[n] !== CR || body[n + 1] !== LF) return yield* new RespError({ message: "bulk string without CRLF" })
        return { _tag: "Bulk", value: body.subarray(0, n) } satisfies Reply
      }
      default:
        return yield* new RespError({ message: `unsupported reply type ${JSON.stringify(header.slice(0, 1))}` })
    }
  })

/** The reply as redis-cli prints it. */
const show = (reply: Reply): string => {
  switch (reply._tag) {
    case "Simple":
      return reply.value
    case "Error":
      return `(error) ${reply.message}`
    case "Integer":
      return `(integer) ${reply.value}`
    case "Bulk":
      return reply.value === null ? "(nil)" : JSON.stringify(decoder.decode(reply.value))
  }
}

/**
 * Sends one command on a connection borrowed from `pool` and reads its
 * reply, printing both. The connection goes back to the pool when the
 * reply was read whole.
 */
const command = (pool: TcpClient.ConnectionPool, deadline: Deadline.Deadline, ...args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    yield* Console.log(`> ${args.map((a) => (/^[\w:.-]+$/.test(a) ? a : JSON.stringify(a))).join(" ")}`)
    const socket = yield* pool.get({ deadline })
    const lines = yield* TcpMessage.crlf(socket, { max: MAX_HEADER })
    yield* socket.sendv(encode(args), { deadline }) // the command holds CRLFs: sent as bytes, not as a message
    const reply = yield* readReply(lines, deadline)
    yield* Console.log(show(reply))
    return reply
  }).pipe(Effect.scoped)

// ---------------------------------------------------------------------------
// Connect with retries

/** Retried errors: the server may not be listening yet, or is slow to answer. */
const retryable = (error: TcpError.ConnectError): boolean =>
  error._tag === "TimedOut" || error._tag === "ConnRefused"

/**
 * Exponential backoff from 100 ms, at most 5 retries, only while the error
 * is retryable. `while` comes before `tap`, so only real retries are printed.
 */
const retryPolicy = Schedule.exponential("100 millis").pipe(
  Schedule.upTo({ times: 5 }),
  Schedule.setInputType<TcpError.ConnectError>(),
  Schedule.while(({ input }) => retryable(input)),
  Schedule.tap(({ attempt, duration }) =>
    Console.log(`  retry ${attempt} in ${Duration.toMillis(duration)} ms`)
  )
)

/**
 * The pool's first connection, retried while the server may be starting; it
 * goes back to the pool idle, for the commands to reuse.
 */
const connectWithRetry = (pool: TcpClient.ConnectionPool, address: string) =>
  Effect.gen(function*() {
    const attempts = yield* Ref.make(0)
    yield* Console.log(`connect ${address} (retrying TimedOut and ConnRefused, at most 5 times)`)
    yield* Ref.updateAndGet(attempts, (n) => n + 1).pipe(
      Effect.andThen((attempt) =>
        pool.get({ timeout: "500 millis" }).pipe(
          Effect.tapError((e) => Console.log(`  attempt ${attempt}: ${e._tag}: ${e.message}`)),
          Effect.scoped
        )
      ),
      Effect.retry(retryPolicy)
    )
    yield* Console.log(`connected after ${yield* Ref.get(attempts)} attempt(s)`)
  })

// ---------------------------------------------------------------------------
// The session

/**
 * Opens a pool, runs the commands, closes it. Every error is reported here,
 * one branch per tag the session can fail with; `true` when it all worked.
 */
const session = (address: string) =>
  Effect.gen(function*() {
    const pool = yield* TcpClient.pool(address, { size: 2, idleTimeout: "30 seconds" })
    yield* connectWithRetry(pool, address)
    const deadline = yield* Deadline.after("3 seconds") // one budget for all the commands
    yield* command(pool, deadline, "PING")
    yield* command(pool, deadline, "SET", "effect-tcp:greeting", "hello, redis")
    yield* command(pool, deadline, "GET", "effect-tcp:greeting")
    yield* command(pool, deadline, "INCR", "effect-tcp:counter")
    yield* command(pool, deadline, "INCR", "effect-tcp:greeting")
    yield* command(pool, deadline, "GET", "effect-tcp:missing")
    const { created, reused, discarded } = yield* pool.stats
    yield* Console.log(`pool: ${created} connection(s) created, ${reused} reuse(s), ${discarded} discarded`)
    return true
  }).pipe(
    Effect.scoped, // closes the pool's connections
    Effect.tap(() => Console.log("closed")),
    Effect.catchTags({
      // connect, after the retries
      ConnRefused: (e) => gaveUp(`nothing listens at ${address}`, e),
      TimedOut: (e) => gaveUp("no answer within the deadline", e),
      InvalidArgument: (e) => gaveUp("bad argument, not retried", e),
      HostUnreach: (e) => gaveUp("host unreachable, not retried", e),
      NetUnreach: (e) => gaveUp("network unreachable, not retried", e),
      NetDown: (e) => gaveUp("network down, not retried", e),
      AddrNotAvail: (e) => gaveUp("address not available (or the name does not resolve), not retried", e),
      AccessDenied: (e) => gaveUp("not permitted, not retried", e),
      TooManyOpenFiles: (e) => gaveUp("out of file descriptors", e),
      SystemFileLimit: (e) => gaveUp("the system is out of file descriptors", e),
      OutOfMemory: (e) => gaveUp("out of memory", e),
      // the exchange
      ConnReset: (e) => gaveUp("the server reset the connection", e),
      BrokenPipe: (e) => gaveUp("the server went away", e),
      PeerClosed: (e) => gaveUp(`the server closed mid-reply after ${e.bytes.length} byte(s)`, e),
      MessageTooLarge: (e) => gaveUp(`a reply header longer than ${MAX_HEADER} bytes`, e),
      Closed: (e) => gaveUp("the socket was already closed", e),
      SystemError: (e) => gaveUp("system error", e),
      RespError: (e) => Effect.as(Console.log(`gave up: protocol error: ${e.message}`), false)
    })
  )

const gaveUp = (why: string, e: TcpError.TcpError) =>
  Effect.as(Console.log(`gave up: ${why}: ${e._tag}: ${e.message}`), false)

// ---------------------------------------------------------------------------
// The demo

/** A loopback port nothing listens on: listen on port 0, note the port, stop. */
const freePort = Effect.scoped(Effect.map(TcpListener.listen("127.0.0.1:0"), (l) => l.port))

const redisServer = process.env["REDIS_SERVER"] ?? "redis-server"

/** `redis-server` on 127.0.0.1:`port`, without persistence, stopped when the scope closes. */
const startRedis = (port: number) =>
  ChildProcess.make(redisServer, [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/tmp"
  ], { stdin: "ignore", stdout: "ignore", stderr: "ignore", forceKillAfter: "2 seconds" })

const demo = Effect.gen(function*() {
  yield* Console.log("--- an error other than TimedOut / ConnRefused fails at once")
  yield* session("127.0.0.1:0")

  const port = yield* freePort
  const address = `127.0.0.1:${port}`
  yield* Console.log(`--- the client starts before the server listens on ${address}`)
  const client = yield* Effect.forkChild(session(address))

  yield* Effect.sleep("250 millis")
  const started = yield* startRedis(port).pipe(
    Effect.tap(() => Console.log(`  (started ${redisServer} on ${address})`)),
    Effect.as(true),
    Effect.catchTag("PlatformError", (e) => {
      const why = e.reason._tag === "NotFound" ? "is not on PATH" : `could not start: ${e.message}`
      return Effect.as(Console.log(`  (${redisServer} ${why}: the retries will give up)`), false)
    })
  )
  const ok = yield* Fiber.join(client)
  yield* Console.log(ok ? "--- done" : started ? "--- failed" : "--- gave up, as expected without a server")
  if (started) yield* Console.log(`  (stopping ${redisServer})`)
}).pipe(Effect.scoped)

const main = process.argv.includes("--demo")
  ? demo
  : Effect.flatMap(session(process.argv[2] ?? "127.0.0.1:6379"), (ok) =>
    ok ? Effect.void : Effect.sync(() => {
      process.exitCode = 1
    }))

NodeRuntime.runMain(main.pipe(Effect.provide([TcpNode.layer, NodeServices.layer])))
