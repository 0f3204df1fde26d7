/**
 * Interop: an HTTP/1.1 GET against python3's `http.server` on 127.0.0.1,
 * as a user would write it: `recvUntil("\r\n\r\n")` for the head, then one
 * exact `recv` of Content-Length bytes for the body.
 *
 * Skipped (with the reason printed) when `python3` is not on PATH.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { TcpClient } from "../../src/index.ts"
import type { TcpError, TcpSocket } from "../../src/index.ts"
import { checkFdLeaks, closedPort, findOnPath, sha256, str, text } from "../helpers.ts"
import { spawnServer, withServer } from "./server-process.ts"

const python3 = findOnPath("python3", "interop/http-server", "install it, e.g. apt-get install python3")

const T = { timeout: "5 seconds" } as const
const LONG = { timeout: "20 seconds" } as const

/** A temporary directory holding `files`, removed with the scope. */
const directoryWith = (files: Record<string, Uint8Array>): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = mkdtempSync(join(tmpdir(), "effect-tcp-http-"))
      for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes)
      return dir
    }),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** `python3 -m http.server` serving `dir` on a free loopback port; its address. */
const startHttpServer = (binary: string, dir: string): Effect.Effect<string, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* closedPort
    yield* spawnServer({
      name: "python3 -m http.server",
      binary,
      args: ["-m", "http.server", "--bind", "127.0.0.1", String(port), "--directory", dir],
      port
    })
    return `127.0.0.1:${port}`
  })

interface Response {
  readonly status: number
  readonly headers: ReadonlyMap<string, string>
  readonly body: Uint8Array
}

/**
 * `GET path` with `Connection: close`: the head up to CRLFCRLF (at most
 * 16 KiB), the body by its Content-Length, then the server's FIN.
 */
const get = (
  socket: TcpSocket.TcpSocket,
  host: string,
  path: string
): Effect.Effect<Response, TcpError.SendError | TcpError.RecvUntilError> =>
  Effect.gen(function*() {
    yield* socket.send(text(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), T)
    const [statusLine = "", ...fields] = str(yield* socket.recvUntil("\r\n\r\n", { max: 16 * 1024, ...T }))
      .split("\r\n")
    const status = /^HTTP\/1\.[01] (\d{3}) /.exec(statusLine)
    if (status === null) return assert.fail(`not an HTTP status line: ${statusLine}`)
    const headers = new Map<string, string>()
    for (const field of fields) {
      const colon = field.indexOf(":")
      if (colon <= 0) return assert.fail(`not a header field: ${field}`)
      headers.set(field.slice(0, colon).trim().toLowerCase(), field.slice(colon + 1).trim())
    }
    const length = Number(headers.get("content-length"))
    if (!Number.isSafeInteger(length) || length < 0) return assert.fail(`no usable Content-Length: ${headers.get("content-length")}`)
    const body = yield* socket.recv(length, LONG)
    // Connection: close: nothing follows the body but the FIN.
    const end = yield* socket.recv(1, T).pipe(
      Effect.as("a byte after the body"),
      Effect.catchTag("PeerClosed", (e) => Effect.succeed(`PeerClosed with ${e.bytes.length} bytes`))
    )
    assert.strictEqual(end, "PeerClosed with 0 bytes")
    return { status: Number(status[1]), headers, body }
  })

/** Runs `body` against python3's http.server serving `files` (`withServer`). */
const withHttpServer = <A, E>(
  files: Record<string, Uint8Array>,
  body: (address: string) => Effect.Effect<A, E, TcpClient.TcpClient | Scope.Scope>
) =>
  withServer(
    "http.server",
    Effect.suspend(() => {
      const binary = python3 ?? assert.fail("python3 missing")
      return Effect.flatMap(directoryWith(files), (dir) => startHttpServer(binary, dir))
    }),
    body
  )

describe("interop: python3 -m http.server", () => {
  checkFdLeaks()

  it.live.skipIf(python3 === undefined)("GET of a 3 MiB file: the head by recvUntil, the body by Content-Length, checked by hash", () => {
    const file = randomBytes(3 * 1024 * 1024)
    return withHttpServer({ "blob.bin": file }, (address) =>
      Effect.gen(function*() {
        const socket = yield* TcpClient.connect(address, T)
        const response = yield* get(socket, address, "/blob.bin")
        assert.strictEqual(response.status, 200)
        assert.strictEqual(response.headers.get("content-length"), String(file.length))
        assert.strictEqual(response.body.length, file.length)
        assert.strictEqual(sha256(response.body), sha256(file), "the body differs from the file")
        yield* socket.close(T)
      }))
  })

  it.live.skipIf(python3 === undefined)("a missing file: a 404 whose body is read by its Content-Length", () =>
    withHttpServer({ "present.txt": text("here\n") }, (address) =>
      Effect.gen(function*() {
        const missing = yield* TcpClient.connect(address, T)
        const notFound = yield* get(missing, address, "/absent.txt")
        assert.strictEqual(notFound.status, 404)
        assert.match(str(notFound.body), /404/)
        yield* missing.close(T)

        const present = yield* TcpClient.connect(address, T)
        const found = yield* get(present, address, "/present.txt")
        assert.strictEqual(found.status, 200)
        assert.strictEqual(str(found.body), "here\n")
        yield* present.close(T)
      })))
})
