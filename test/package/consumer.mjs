// A user of the published package, in plain JavaScript: test/package/check.ts
// copies it into a project that installed the packed tarball, and runs it
// under Node 24 and under the oldest Node 22 `engines` allows. It prints one
// line per check and exits 1 at the first that fails.
import { Effect } from "effect"
import { TcpClient, TcpError, TcpListener, TcpNode } from "effect-tcp"
import * as TcpErrorModule from "effect-tcp/TcpError"
import * as Net from "node:net"

const T = { timeout: "5 seconds" }

const fail = (message) => {
  throw new Error(message)
}

/** A loopback port nothing listens on: bound by the kernel, then released. */
const closedPort = () =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })

/** A node:net server on loopback that hands each connection to `onConnection`. */
const peerServer = (onConnection) =>
  new Promise((resolve, reject) => {
    const server = Net.createServer(onConnection)
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve(server))
  })

const checks = {
  async "connect to a closed port fails ConnRefused, caught with Effect.catchTag"() {
    const port = await closedPort()
    const outcome = await TcpClient.connect(`127.0.0.1:${port}`, T).pipe(
      Effect.as("connected"),
      Effect.scoped,
      Effect.catchTag("ConnRefused", (error) => Effect.succeed(`${error._tag} ${error.errno}`)),
      Effect.provide(TcpNode.layer),
      Effect.runPromise
    )
    if (outcome !== "ConnRefused ECONNREFUSED") fail(`expected ConnRefused ECONNREFUSED, got ${outcome}`)
  },

  async "listen, serve, connect, send, recv exactly, close"() {
    const reply = await Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      yield* Effect.forkScoped(listener.pipe(TcpListener.serve((socket) =>
        Effect.gen(function*() {
          yield* socket.send(yield* socket.recv(5, T))
          yield* socket.close()
        })
      )))
      const socket = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
      yield* socket.send(new TextEncoder().encode("hello"))
      const bytes = yield* socket.recv(5, T)
      yield* socket.close()
      return new TextDecoder().decode(bytes)
    }).pipe(Effect.scoped, Effect.provide(TcpNode.layer), Effect.runPromise)
    if (reply !== "hello") fail(`expected the echo "hello", got ${JSON.stringify(reply)}`)
  },

  // Node 22's libuv reports a reset that arrives behind unread bytes as the
  // end of the stream; the library must still say ConnReset, as on Node 24.
  async "a reset behind unread bytes is ConnReset after those bytes, not the peer's FIN"() {
    const sent = 50_000
    let peerGone
    const gone = new Promise((resolve) => (peerGone = resolve))
    const server = await peerServer((peer) => {
      peer.on("error", () => {})
      peer.on("close", () => peerGone())
      // Only once the client is connected (its byte arrived), or the reset would fail the connect.
      peer.once("data", () => peer.write(new Uint8Array(sent).fill(7), () => peer.resetAndDestroy()))
    })
    try {
      const outcome = await Effect.gen(function*() {
        const socket = yield* TcpClient.connect(`127.0.0.1:${server.address().port}`, T)
        yield* socket.send(new Uint8Array([1]))
        // The 4 KiB slot fills and reading pauses: the rest and the reset wait in the kernel together.
        yield* Effect.promise(() => gone)
        let received = 0
        for (let i = 0; i < 1000; i++) {
          const exit = yield* Effect.exit(socket.recv(1000, T))
          if (exit._tag === "Success") received += exit.value.length
          else return { received, error: yield* Effect.flip(exit) }
        }
        return { received, error: undefined }
      }).pipe(Effect.scoped, Effect.provide(TcpNode.layerWith({ slots: 2, bufferSize: 4096 })), Effect.runPromise)
      if (outcome.error?._tag !== "ConnReset") {
        fail(`expected ConnReset after the bytes, got ${outcome.error?._tag ?? "no error"} after ${outcome.received} bytes`)
      }
      if (outcome.received > sent) fail(`received ${outcome.received} of ${sent} bytes`)
    } finally {
      server.close()
    }
  },

  async "effect-tcp/TcpError is the module index.js exports"() {
    if (TcpErrorModule.ConnRefused !== TcpError.ConnRefused) fail("two copies of TcpError")
  },

  async "effect-tcp/internal/* is not exported"() {
    const outcome = await import("effect-tcp/internal/address").then(() => "imported", (error) => error.code)
    if (outcome !== "ERR_PACKAGE_PATH_NOT_EXPORTED") fail(`expected ERR_PACKAGE_PATH_NOT_EXPORTED, got ${outcome}`)
  }
}

for (const [name, check] of Object.entries(checks)) {
  try {
    await check()
    console.log(`  ok   ${name}`)
  } catch (error) {
    console.log(`  FAIL ${name}: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  }
}
