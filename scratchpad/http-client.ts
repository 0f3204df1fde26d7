/**
 * An HTTP/1.1 GET client in a page: the head up to its blank line with one
 * `socket.recvUntil("\r\n\r\n")`, then exactly `Content-Length` bytes of body
 * with one `socket.recv(n)` on the same socket.
 *
 *     node scratchpad/http-client.ts --demo              # `npm run http`: a server of its own, two GETs, then exit
 *     node scratchpad/http-client.ts HOST:PORT [PATH]    # one GET (PATH defaults to /) from a server of yours
 *
 * The demo writes a 1 MiB file into a temporary directory and serves it with
 * python3's `http.server` (started on a free loopback port, stopped at the
 * end). Without python3 on PATH (or `PYTHON3=/path/to/python3`) it serves
 * the same file from a listener of its own (`TcpListener.serve`, a fixed
 * response per path). Either way it GETs the file and a missing path, and
 * prints each response's status, body length and SHA-256; the file's hash
 * must match, or the exit code is 1.
 *
 * The head is bounded (`MAX_HEAD`: a longer one is `MessageTooLarge`), and
 * so is the body (`MAX_BODY`); the body needs no buffer of ours while it
 * arrives: the exact receive collects it from the socket's storage slot.
 * Only `Content-Length` bodies are read: chunked ones are refused as
 * `HttpError`, as is a head that is not HTTP.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect, FileSystem, Option, Path, Result, Schema, Stream } from "effect"
import { ChildProcess } from "effect/process"
import { createHash } from "node:crypto"
import { Deadline, TcpClient, TcpListener, TcpNode, TcpSocket } from "../src/index.ts"

/** Longest response head accepted; a longer one is `MessageTooLarge`. */
const MAX_HEAD = 16 * 1024
/** Largest body accepted. */
const MAX_BODY = 64 * 1024 * 1024
/** The file the demo serves. */
const FILE_NAME = "hello.bin"
const FILE_SIZE = 1024 * 1024

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

// ---------------------------------------------------------------------------
// The client

/** The server broke HTTP/1.1 as this client speaks it. */
class HttpError extends Schema.TaggedError<HttpError>()("HttpError", { message: Schema.String }) {}

/** A response: its status line, its headers (names in lower case), its body. */
interface Response {
  readonly version: string
  readonly status: number
  readonly reason: string
  readonly headers: ReadonlyMap<string, string>
  readonly body: Uint8Array
}

/** The status line and headers of a head (without its blank line). */
const parseHead = (head: string) =>
  Effect.gen(function*() {
    const [statusLine = "", ...fields] = head.split("\r\n")
    const status = /^(HTTP\/1\.[01]) (\d{3})(?: (.*))?$/.exec(statusLine)
    if (status === null) return yield* new HttpError({ message: `not an HTTP/1.x status line: ${JSON.stringify(statusLine)}` })
    const headers = new Map<string, string>()
    for (const field of fields) {
      const colon = field.indexOf(":")
      if (colon <= 0) return yield* new HttpError({ message: `malformed header: ${JSON.stringify(field)}` })
      headers.set(field.slice(0, colon).trim().toLowerCase(), field.slice(colon + 1).trim())
    }
    return { version: status[1] ?? "", status: Number(status[2]), reason: status[3] ?? "", headers }
  })

/** The body's length as `Content-Length` gives it, within `MAX_BODY`. */
const contentLength = (headers: ReadonlyMap<string, string>) => {
  if (headers.has("transfer-encoding")) {
    return Effect.fail(new HttpError({ message: `Transfer-Encoding ${headers.get("transfer-encoding")} is not read here` }))
  }
  const value = headers.get("content-length")
  if (value === undefined || !/^\d{1,16}$/.test(value)) {
    return Effect.fail(new HttpError({ message: `no usable Content-Length: ${JSON.stringify(value ?? null)}` }))
  }
  const length = Number(value)
  return length > MAX_BODY
    ? Effect.fail(new HttpError({ message: `body of ${length} bytes, more than ${MAX_BODY}` }))
    : Effect.succeed(length)
}

/**
 * GET `path` from `address` on a connection of its own (`Connection:
 * close`): the head with one `recvUntil`, the body with one exact `recv`.
 */
const get = (address: string, path: string, deadline: Deadline.Deadline) =>
  Effect.gen(function*() {
    const socket = yield* TcpClient.connect(address, { deadline })
    const request = `GET ${path} HTTP/1.1\r\nHost: ${address}\r\nUser-Agent: effect-tcp\r\nConnection: close\r\n\r\n`
    yield* socket.send(encoder.encode(request), { deadline })
    const head = yield* parseHead(decoder.decode(yield* socket.recvUntil("\r\n\r\n", { max: MAX_HEAD, deadline })))
    const length = yield* contentLength(head.headers)
    const body = length === 0 ? new Uint8Array(0) : yield* socket.recv(length, { deadline })
    yield* socket.close({ deadline })
    return { ...head, body } satisfies Response
  }).pipe(Effect.scoped)

/**
 * GETs `path` and prints the outcome: the status, the body's length and
 * hash, or why there is no response. `Some(response)` when one came.
 */
const fetchAndShow = (address: string, path: string, deadline: Deadline.Deadline) =>
  Console.log(`GET http://${address}${path}`).pipe(
    Effect.andThen(get(address, path, deadline)),
    Effect.tap((r) =>
      Console.log(`  ${r.version} ${r.status} ${r.reason}: ${r.body.length} bytes, sha256 ${sha256(r.body)}`)
    ),
    Effect.map(Option.some),
    Effect.catchTags({
      HttpError: (e) => failed(`not a response this client reads: ${e.message}`),
      MessageTooLarge: () => failed(`a response head longer than ${MAX_HEAD} bytes`),
      PeerClosed: (e) => failed(`the server closed mid-response, after ${e.bytes.length} byte(s) of what was asked`),
      ConnRefused: (e) => failed(e.message),
      ConnReset: (e) => failed(e.message),
      TimedOut: (e) => failed(`no response within the deadline: ${e.message}`),
      BrokenPipe: (e) => failed(e.message),
      HostUnreach: (e) => failed(e.message),
      NetUnreach: (e) => failed(e.message),
      NetDown: (e) => failed(e.message),
      AddrNotAvail: (e) => failed(e.message),
      AccessDenied: (e) => failed(e.message),
      InvalidArgument: (e) => failed(e.message),
      TooManyOpenFiles: (e) => failed(e.message),
      SystemFileLimit: (e) => failed(e.message),
      OutOfMemory: (e) => failed(e.message),
      Closed: (e) => failed(e.message),
      SystemError: (e) => failed(`${e.errno}: ${e.message}`)
    })
  )

const failed = (why: string) => Effect.as(Console.log(`  failed: ${why}`), Option.none<Response>())

// ---------------------------------------------------------------------------
// The demo's servers

/** The demo's file: 1 MiB of a fixed pattern, so its hash is the same every run. */
const fileContents = (): Uint8Array => {
  const bytes = new Uint8Array(FILE_SIZE)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + (i >>> 10)) & 0xff
  return bytes
}

const python = process.env["PYTHON3"] ?? "python3"

/**
 * python3's `http.server` serving `directory` on a free loopback port,
 * stopped with the scope; its address once it says it is serving. `None`
 * when python3 is not there or says nothing within 30 seconds (a slow
 * machine: it normally takes a few hundred milliseconds).
 */
const startPython = (directory: string) =>
  Effect.gen(function*() {
    const child = yield* ChildProcess.make(python, [
      "-u", // unbuffered: its "Serving HTTP on ... port N" line comes at once
      "-m",
      "http.server",
      "0",
      "--bind",
      "127.0.0.1",
      "--directory",
      directory
    ], { stdin: "ignore", stdout: "pipe", stderr: "ignore", forceKillAfter: "2 seconds" })
    const serving = yield* child.stdout.pipe(
      Stream.decodeText(),
      Stream.splitLines,
      Stream.filterMap((line) => {
        const port = /^Serving HTTP on \S+ port (\d+)/.exec(line)?.[1]
        return port === undefined ? Result.fail(line) : Result.succeed(`127.0.0.1:${port}`)
      }),
      Stream.runHead,
      Effect.timeoutOption("30 seconds"),
      Effect.map(Option.flatten)
    )
    if (Option.isNone(serving)) yield* Console.log(`  (${python} started but did not say where it serves)`)
    return serving
  }).pipe(
    Effect.catchTag("PlatformError", (e) =>
      Effect.as(
        Console.log(`  (${python} ${e.reason._tag === "NotFound" ? "is not on PATH" : `could not start: ${e.message}`})`),
        Option.none<string>()
      ))
  )

/**
 * The fallback server: a listener of its own answering each GET of `/${FILE_NAME}`
 * with the file and any other path with a 404, one request per connection.
 */
const startOwnServer = (file: Uint8Array) =>
  Effect.gen(function*() {
    const listener = yield* TcpListener.listen("127.0.0.1:0")
    const respond = (socket: TcpSocket.TcpSocket, status: string, body: Uint8Array) =>
      socket.sendv([
        encoder.encode(
          `HTTP/1.1 ${status}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`
        ),
        body
      ], { timeout: "5 seconds" })
    const handler = (socket: TcpSocket.TcpSocket) =>
      socket.recvUntil("\r\n\r\n", { max: MAX_HEAD, timeout: "5 seconds" }).pipe(
        Effect.flatMap((head) => {
          const path = /^GET (\S+) HTTP\/1\.[01]\r?$/m.exec(decoder.decode(head))?.[1]
          return path === `/${FILE_NAME}`
            ? respond(socket, "200 OK", file)
            : respond(socket, "404 Not Found", encoder.encode(`no ${path ?? "such path"} here\n`))
        }),
        Effect.catchTag("MessageTooLarge", () => respond(socket, "431 Request Header Fields Too Large", new Uint8Array(0)))
      )
    yield* Effect.forkScoped(listener.pipe(TcpListener.serve(handler, { concurrency: 16 })))
    return `127.0.0.1:${listener.port}`
  })

// ---------------------------------------------------------------------------
// The demo

const demo = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const directory = yield* fs.makeTempDirectoryScoped({ prefix: "effect-tcp-http-" })
  const file = fileContents()
  yield* fs.writeFile(path.join(directory, FILE_NAME), file)
  const expected = sha256(file)
  yield* Console.log(`wrote ${FILE_NAME}: ${file.length} bytes, sha256 ${expected}`)

  const address = yield* startPython(directory).pipe(
    Effect.flatMap(Option.match({
      onSome: (address) => Effect.as(Console.log(`server: ${python} -m http.server on ${address}`), address),
      onNone: () =>
        Effect.tap(startOwnServer(file), (address) => Console.log(`server: a TcpListener of this script on ${address}`))
    }))
  )

  const deadline = yield* Deadline.after("10 seconds") // one budget for both requests
  const found = yield* fetchAndShow(address, `/${FILE_NAME}`, deadline)
  const missing = yield* fetchAndShow(address, "/missing.txt", deadline)

  const fileOk = Option.exists(found, (r) => r.status === 200 && sha256(r.body) === expected)
  const missingOk = Option.exists(missing, (r) => r.status === 404)
  yield* Console.log(fileOk ? "the body's hash matches the file's" : "the file did not come back whole")
  if (!fileOk || !missingOk) {
    yield* Effect.sync(() => {
      process.exitCode = 1
    })
  }
  yield* Console.log("--- done")
}).pipe(Effect.scoped)

/** One GET against a server of yours: the exit code is 1 when no response came. */
const once = (address: string, path: string) =>
  Effect.gen(function*() {
    const deadline = yield* Deadline.after("10 seconds")
    const response = yield* fetchAndShow(address, path, deadline)
    if (Option.isNone(response)) {
      yield* Effect.sync(() => {
        process.exitCode = 1
      })
    }
  })

const usage = Effect.andThen(
  Console.error("usage: node scratchpad/http-client.ts --demo | HOST:PORT [PATH]"),
  Effect.sync(() => {
    process.exitCode = 2
  })
)

const [first, second] = process.argv.slice(2)
const main = first === "--demo" ? demo : first === undefined || first.startsWith("-") ? usage : once(first, second ?? "/")

NodeRuntime.runMain(main.pipe(Effect.provide([TcpNode.layer, NodeServices.layer])))
