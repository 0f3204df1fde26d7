/**
 * effect/socket's `Socket` contract, checked the same way on three adapters:
 * `TcpSocket.toSocket`, `TcpClient.makeSocket`, and `NodeSocket.makeNet`
 * (@effect/platform-node) as the reference. The cases are ported from
 * Effect's own socket tests (NodeSocket, Socket.toChannel, SocketConnector,
 * RpcServer over tcp), each one run against real node:net peers on loopback.
 *
 * Where effect-tcp deliberately behaves differently from NodeSocket, the case
 * says so and why; everywhere else the outcomes must be NodeSocket's.
 */
import { NodeSocket } from "@effect/platform-node"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Schema, Scope, Stream } from "effect"
import type { NetAddress } from "effect/net"
import { Rpc, RpcClient, RpcGroup, RpcSerialization, RpcServer } from "effect/rpc"
import * as Socket from "effect/socket/Socket"
import * as SocketServer from "effect/socket/SocketServer"
import type * as Net from "node:net"
import { TcpClient, TcpSocket } from "../src/index.ts"
import { checkFdLeaks, echoServer, rawServer, readAll, withTcp } from "./helpers.ts"

const T = { timeout: "3 seconds" } as const
const utf8 = new TextEncoder()
const text = (chunks: ReadonlyArray<Uint8Array | string>) =>
  Buffer.concat(chunks.map((chunk) => Buffer.from(chunk))).toString()

/** One way of getting an effect/socket `Socket` onto a loopback port. */
interface Adapter {
  readonly name: string
  readonly open: (port: number) => Effect.Effect<Socket.Socket, never, TcpClient.TcpClient | Scope.Scope>
}

const adapters: ReadonlyArray<Adapter> = [
  {
    name: "NodeSocket.makeNet (reference)",
    open: (port) => NodeSocket.makeNet({ host: "127.0.0.1", port })
  },
  {
    name: "TcpClient.makeSocket",
    open: (port) => TcpClient.makeSocket(`127.0.0.1:${port}`, T)
  },
  {
    // The connection exists before the reader is acquired and outlives every
    // acquisition: it belongs to the scope `connect` ran in.
    name: "TcpSocket.toSocket",
    open: (port) => Effect.orDie(Effect.map(TcpClient.connect(`127.0.0.1:${port}`, T), TcpSocket.toSocket))
  }
]

/** Runs `body` once per adapter, each on its own pool (checked idle afterwards) and peer. */
const eachAdapter = (
  title: string,
  body: (adapter: Adapter) => Effect.Effect<void, unknown, TcpClient.TcpClient | Scope.Scope>
) => {
  describe(title, () => {
    for (const adapter of adapters) {
      it.live(adapter.name, () => withTcp(body(adapter)))
    }
  })
}

/** A peer that accepts and then neither reads nor writes nor closes; `firstPeer` waits for its first connection. */
const silentServer = Effect.suspend(() => {
  const firstPeer = Deferred.makeUnsafe<Net.Socket>()
  return rawServer((peer) => {
    peer.on("error", () => {})
    Deferred.doneUnsafe(firstPeer, Effect.succeed(peer))
  }).pipe(Effect.map((server) => ({ ...server, firstPeer: Deferred.await(firstPeer) })))
})

/** A peer handing each connection to `onConnection`, which also sees what the peer received, in full, at our FIN. */
const peerServer = (onConnection: (peer: Net.Socket) => void) =>
  Effect.suspend(() => {
    const received: Array<Effect.Effect<Buffer, Error>> = []
    return rawServer((peer) => {
      peer.on("error", () => {})
      received.push(readAll(peer))
      onConnection(peer)
    }).pipe(Effect.map((server) => ({ ...server, received })))
  })

const closeCode = (error: Socket.SocketError): number | undefined =>
  error.reason._tag === "SocketCloseError" ? error.reason.code : undefined

/** The close error the adapters report when the peer finished cleanly. */
const isCleanClose = (error: Socket.SocketError) => closeCode(error) === 1000

describe("effect/socket adapters", () => {
  checkFdLeaks()

  // ------------------------------------------------ ported from NodeSocket.test.ts

  eachAdapter("echoes a stream through Socket.toChannel (effect's \"open\")", (adapter) =>
    Effect.gen(function*() {
      const server = yield* echoServer()
      const socket = yield* adapter.open(server.port)
      const output = yield* Stream.make("Hello", "World").pipe(
        Stream.encodeText,
        Stream.pipeThroughChannel(Socket.toChannel(socket)),
        // Our FIN at the end of the input, the echo's FIN back: a clean close ends the output.
        Stream.catchIf(isCleanClose, () => Stream.empty),
        Stream.decodeText(),
        Stream.mkString
      )
      assert.strictEqual(output, "HelloWorld")
    }))

  eachAdapter("pulls batches of what the peer echoed (effect's \"pull batches\")", (adapter) =>
    Effect.gen(function*() {
      const server = yield* echoServer()
      const socket = yield* adapter.open(server.port)
      const received = yield* Effect.scoped(Effect.gen(function*() {
        const writer = yield* socket.writer
        const pull = yield* Socket.readerBytes(socket)
        yield* writer.writeAll(["Hello", "World"])
        const chunks: Array<Uint8Array> = []
        let length = 0
        // Each pull brings at least one byte: at most 10 pulls.
        for (let i = 0; i < 10 && length < 10; i++) {
          for (const chunk of yield* pull) {
            chunks.push(chunk)
            length += chunk.byteLength
          }
        }
        return text(chunks)
      }))
      assert.strictEqual(received, "HelloWorld")
    }))

  eachAdapter("the writer sends bytes, strings and batches in order; a CloseEvent ends what the peer gets", (adapter) =>
    Effect.gen(function*() {
      const server = yield* peerServer(() => {})
      const socket = yield* adapter.open(server.port)
      yield* Effect.scoped(Effect.gen(function*() {
        // makeNet and makeSocket connect when the reader is acquired; writes wait for that.
        yield* socket.reader
        const writer = yield* socket.writer
        yield* writer.write(utf8.encode("bytes,"))
        yield* writer.write("a string,")
        yield* writer.writeAll(["a ", utf8.encode("batch")])
        yield* writer.write(new Socket.CloseEvent())
      }))
      // NodeSocket closes the whole connection at a CloseEvent 1000, effect-tcp
      // only sends its FIN (TCP's half-close): either way the peer has every byte, then its end.
      const received = yield* (server.received[0] ?? Effect.die("no connection"))
      assert.strictEqual(received.toString(), "bytes,a string,a batch")
    }))

  eachAdapter("a CloseEvent with a code above 1000 ends the connection and fails the reader", (adapter) =>
    Effect.gen(function*() {
      const server = yield* silentServer
      const socket = yield* adapter.open(server.port)
      const error = yield* Effect.scoped(Effect.gen(function*() {
        const { pull } = yield* socket.reader
        const writer = yield* socket.writer
        yield* writer.write(new Socket.CloseEvent(4000, "going away"))
        return yield* Effect.flip(pull)
      }))
      // NodeSocket destroys the stream with an error, effect-tcp aborts (libdill's
      // hclose): the reader sees a read error either way, never a clean close.
      assert.strictEqual(error.reason._tag, "SocketReadError")
    }))

  // ------------------------------------------- the run ends when either side ends

  eachAdapter("the peer's FIN ends a channel run with SocketCloseError 1000, after every byte it sent", (adapter) =>
    Effect.gen(function*() {
      const server = yield* peerServer((peer) => peer.end("last words"))
      const socket = yield* adapter.open(server.port)
      const chunks: Array<Uint8Array> = []
      const error = yield* Stream.never.pipe(
        Stream.pipeThroughChannel(Socket.toChannel(socket)),
        Stream.runForEach((chunk) => Effect.sync(() => chunks.push(chunk))),
        Effect.flip
      )
      assert.strictEqual(closeCode(error), 1000)
      assert.strictEqual(text(chunks), "last words")
    }))

  eachAdapter("a reset by the peer ends a channel run with SocketReadError", (adapter) =>
    Effect.gen(function*() {
      // The peer resets once our first bytes arrive, so the connection is surely up.
      const server = yield* peerServer((peer) => peer.once("data", () => peer.resetAndDestroy()))
      const socket = yield* adapter.open(server.port)
      const error = yield* Stream.concat(Stream.make(utf8.encode("hello")), Stream.never).pipe(
        Stream.pipeThroughChannel(Socket.toChannel(socket)),
        Stream.runDrain,
        Effect.flip
      )
      assert.strictEqual(error.reason._tag, "SocketReadError")
    }))

  // ---------------------------------------------------- the reader contract itself

  eachAdapter("an upstream failure ends a channel run at once, against a silent peer", (adapter) =>
    Effect.gen(function*() {
      // Socket.make: "the reader must fail a suspended pull when its acquisition
      // scope closes". toChannel closes it when its input fails, and relies on
      // that to end the run: a reader that waits for the peer hangs here.
      const server = yield* silentServer
      const socket = yield* adapter.open(server.port)
      const exit = yield* Stream.concat(Stream.make(utf8.encode("request")), Stream.fail("boom")).pipe(
        Stream.pipeThroughChannel(Socket.toChannel<string>(socket)),
        Stream.runDrain,
        Effect.exit
      )
      assert.deepStrictEqual(exit, Exit.fail("boom"))
    }))

  eachAdapter(
    "a pull waiting as the reader's scope closes fails with SocketCloseError 1006, later pulls too",
    (adapter) =>
      Effect.gen(function*() {
        const server = yield* silentServer
        const socket = yield* adapter.open(server.port)
        const readScope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(readScope, Exit.void))
        const { pull } = yield* Scope.provide(socket.reader, readScope)
        const parked = yield* Effect.forkChild(pull, { startImmediately: true })
        assert.isUndefined(parked.pollUnsafe(), "nothing was sent: the pull waits")
        yield* Scope.close(readScope, Exit.void)
        const error = yield* Effect.flip(Fiber.join(parked))
        assert.strictEqual(closeCode(error), 1006)
        assert.strictEqual(closeCode(yield* Effect.flip(pull)), 1006)
      })
  )

  eachAdapter(
    "an interrupted pull loses nothing, the next gets the bytes (effect's \"preserves a chunk\")",
    (adapter) =>
      Effect.gen(function*() {
        const server = yield* silentServer
        const socket = yield* adapter.open(server.port)
        const { pull } = yield* socket.reader
        const parked = yield* Effect.forkChild(pull, { startImmediately: true })
        assert.isUndefined(parked.pollUnsafe(), "nothing was sent: the pull waits")
        yield* Fiber.interrupt(parked)
        // The peer speaks only once the pull is gone.
        const peer = yield* server.firstPeer
        peer.write("hello")
        assert.strictEqual(text(yield* pull), "hello")
      })
  )

  describe("a write failure while a pull waits ends a channel run with it (effect's Socket.toChannel test)", () => {
    // Writing after a CloseEvent 1000 fails on effect-tcp, which half-closed
    // (BrokenPipe) and still reads. NodeSocket's CloseEvent destroys the whole
    // connection, so its reader has already ended: the case is effect-tcp's.
    for (const adapter of adapters.filter((adapter) => !adapter.name.startsWith("NodeSocket"))) {
      it.live(adapter.name, () =>
        withTcp(Effect.gen(function*() {
          const server = yield* silentServer
          const socket = yield* adapter.open(server.port)
          // Two chunks: toChannel writes a chunk up to its CloseEvent and drops the rest.
          const input = Stream.concat(Stream.make("request", new Socket.CloseEvent()), Stream.make("more"))
          const error = yield* input.pipe(
            Stream.pipeThroughChannel(Socket.toChannel(socket)),
            Stream.runDrain,
            Effect.flip
          )
          assert.strictEqual(error.reason._tag, "SocketWriteError")
          const cause = error.reason._tag === "SocketWriteError" ? error.reason.cause : undefined
          assert.strictEqual((cause as { readonly _tag?: string } | undefined)?._tag, "BrokenPipe")
        })))
    }
  })

  eachAdapter("the reader can be acquired again after its scope closed mid-pull, and reads on", (adapter) =>
    Effect.gen(function*() {
      // Effect's reconnect pattern: retry around a scoped consume loop. makeNet
      // and makeSocket open a new connection per acquisition; toSocket reads on
      // from the same one, and the interrupted pull must not have eaten any byte.
      const server = yield* echoServer()
      const socket = yield* adapter.open(server.port)
      const writer = yield* socket.writer
      const exchange = (message: string) =>
        Effect.scoped(Effect.gen(function*() {
          const pull = yield* Socket.readerBytes(socket)
          yield* writer.write(message)
          const chunks: Array<Uint8Array> = []
          for (let i = 0; i < message.length && text(chunks).length < message.length; i++) {
            chunks.push(...(yield* pull))
          }
          // Leave a pull waiting as the scope closes.
          yield* Effect.forkScoped(pull, { startImmediately: true })
          return text(chunks)
        }))
      assert.strictEqual(yield* exchange("first"), "first")
      assert.strictEqual(yield* exchange("second"), "second")
    }))

  // ------------------------------------------------- ported from RpcServer.test.ts

  describe("an RPC client over each adapter, against an RpcServer on NodeSocketServer", () => {
    class Echo extends Schema.Class<Echo>("Echo")({ message: Schema.String }) {}
    const Rpcs = RpcGroup.make(
      Rpc.make("Echo", { payload: Echo, success: Echo }),
      Rpc.make("Count", { payload: { to: Schema.Number }, success: Schema.Number, stream: true })
    )
    const Handlers = Rpcs.toLayer({
      Echo: (request) => Effect.succeed(new Echo({ message: request.message })),
      Count: ({ to }) => Stream.range(1, to)
    })
    const Server = RpcServer.layer(Rpcs).pipe(
      Layer.provide(Handlers),
      Layer.provideMerge(RpcServer.layerProtocolSocketServer),
      Layer.provideMerge(NodeSocketServer.layer({ host: "127.0.0.1", port: 0 })),
      Layer.provide(RpcSerialization.layerNdjson)
    )

    for (const adapter of adapters) {
      it.live(adapter.name, () =>
        withTcp(Effect.gen(function*() {
          const server = yield* Layer.build(Server)
          const listening = yield* SocketServer.SocketServer.pipe(Effect.provide(server))
          const { port } = listening.address as NetAddress.InetAddress
          const results = yield* Effect.scoped(Effect.gen(function*() {
            const client = yield* RpcClient.make(Rpcs)
            const echoed = yield* client.Echo({ message: "over tcp" })
            const counted = yield* Stream.runCollect(client.Count({ to: 5 }))
            return { echoed: echoed.message, counted }
          }).pipe(
            Effect.provide(RpcClient.layerProtocolSocket().pipe(
              Layer.provide(Layer.effect(Socket.Socket, adapter.open(port))),
              Layer.provide(RpcSerialization.layerNdjson)
            ))
          ))
          assert.strictEqual(results.echoed, "over tcp")
          assert.deepStrictEqual(results.counted, [1, 2, 3, 4, 5])
        })))
    }
  })
})
