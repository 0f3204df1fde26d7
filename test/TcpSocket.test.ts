/**
 * The connected socket's data path: exact-length receives, sends, half-close,
 * graceful close and abort, deadlines, partial work and concurrency, on real
 * loopback sockets (ours on both ends, or a plain node:net peer).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, pipe, Result } from "effect"
import { NetAddress } from "effect/net"
import { TestClock } from "effect/testing"
import { createHash, randomBytes } from "node:crypto"
import type * as Net from "node:net"
import { Deadline, TcpClient, TcpListener, TcpNode, TcpSocket, TcpStorage } from "../src/index.ts"
import {
  bytesTaken,
  checkFdLeaks,
  eventually,
  expectPoolIdle,
  expectWaiting,
  failsWith,
  forkWaiting,
  pollUntil,
  rawServer,
  readAll,
  TestTcp,
  turns,
  withTcp
} from "./helpers.ts"

// ---------------------------------------------------------------- fixtures

/** Generous bound for calls that should complete: a hang fails the test instead of the file. */
const T = { timeout: "5 seconds" } as const
/** The test pool's slot size (helpers' `TestTcp`). */
const SLOT = 16 * 1024
const KiB = 1024
const MiB = 1024 * 1024

/** Two of our sockets, connected to each other through a listener on 127.0.0.1. */
const pair = Effect.gen(function*() {
  const listener = yield* TcpListener.listen("127.0.0.1:0")
  const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
  const server = yield* listener.accept(T)
  return { client, server, listener }
})

/** What a plain node:net peer observed. */
interface Seen {
  ended: boolean
  closed: boolean
  error: string | undefined
}

const watch = (socket: Net.Socket): Seen => {
  const seen: Seen = { ended: false, closed: false, error: undefined }
  socket.on("end", () => {
    seen.ended = true
  })
  socket.on("close", () => {
    seen.closed = true
  })
  socket.on("error", (e: NodeJS.ErrnoException) => {
    seen.error = e.code ?? e.message
  })
  return seen
}

/**
 * A plain node:net server (allowHalfOpen); each accepted socket gets noDelay,
 * a `watch` (so its errors never go unhandled) and `setup`, at once.
 * `next` waits (at most 5 s) for the first accepted socket.
 */
const rawListen = (setup: (peer: Net.Socket) => void = () => {}) =>
  Effect.gen(function*() {
    let accepted: (peer: { readonly socket: Net.Socket; readonly seen: Seen }) => void = () => {}
    const first = new Promise<{ readonly socket: Net.Socket; readonly seen: Seen }>((resolve) => {
      accepted = resolve
    })
    const server = yield* rawServer((socket) => {
      socket.setNoDelay(true)
      const seen = watch(socket)
      setup(socket)
      accepted({ socket, seen })
    })
    const next = Effect.promise(() => first).pipe(Effect.timeout("5 seconds"), Effect.orDie)
    return { server, next }
  })

/** Our client connected to a plain node:net peer (see `rawListen`). */
const rawPair = (setup: (peer: Net.Socket) => void = () => {}, options?: TcpClient.ConnectOptions) =>
  Effect.gen(function*() {
    const { server, next } = yield* rawListen(setup)
    const client = yield* TcpClient.connect(server.address, { ...T, ...options })
    const { socket: peer, seen } = yield* next
    return { client, peer, seen, server }
  })

/** Writes on a node:net socket; completes once Node handed the bytes to the kernel. */
const peerWrite = (peer: Net.Socket, bytes: Uint8Array): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    peer.write(bytes, () => resume(Effect.void))
  })

/** `n` bytes 0, 1, 2, ... (mod 256). */
const seq = (n: number, from = 0): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff)

const sha = (...parts: ReadonlyArray<Uint8Array>): string => {
  const hash = createHash("sha256")
  for (const part of parts) hash.update(part)
  return hash.digest("hex")
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

const inUse = Effect.map(TcpStorage.stats, (s) => s.inUse)

/** Starts `socket.recv(n, T)` in a fiber and returns it once it waits. */
const waitingRecv = (socket: TcpSocket.TcpSocket, n: number) => forkWaiting(socket.recv(n, T), `recv(${n})`)

/** Closes both ends at once, each bounded by `T`. */
const closeBoth = (a: TcpSocket.TcpSocket, b: TcpSocket.TcpSocket) =>
  Effect.all([a.close(T), b.close(T)], { concurrency: "unbounded" })

/**
 * Waits (bounded) until `peer` has handed everything it wrote, and its FIN,
 * to the kernel, then lets this end's I/O callbacks run: on loopback the
 * bytes and the FIN have then reached this end. When they have not (more
 * than the kernel buffers hold before this end reads, or a kernel that
 * defers delivery), the test takes the path where they arrive while a
 * receive waits, which must give the same results.
 */
const peerFlushed = (peer: Net.Socket) => Effect.andThen(pollUntil(() => peer.writableFinished, 100), turns())

/** Our client (see `rawPair`), once `data` and the FIN its peer sent at once have reached this end. */
const afterPeerFin = (data: Uint8Array) =>
  Effect.gen(function*() {
    const pair = yield* rawPair((peer) => {
      peer.end(data)
    })
    yield* peerFlushed(pair.peer)
    return pair
  })

// ------------------------------------------------------------------ tests

describe("TcpSocket", () => {
  checkFdLeaks()

  describe("exact-length receives", () => {
    it.live("recv(n) waits for all n bytes when the peer trickles them one at a time", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair()
        const fiber = yield* forkWaiting(client.recv(12, T), "recv(12) with nothing sent")
        // Each byte reaches this end on its own: the peer's write is in the kernel, then I/O runs.
        for (let i = 0; i < 6; i++) {
          yield* peerWrite(peer, Uint8Array.of(i))
          yield* turns(3)
        }
        yield* expectWaiting(fiber, "recv(12) with only 6 bytes sent")
        for (let i = 6; i < 12; i++) {
          yield* peerWrite(peer, Uint8Array.of(i))
          yield* turns(3)
        }
        const bytes = yield* Fiber.join(fiber)
        assert.deepStrictEqual(bytes, seq(12))
        yield* failsWith(() => client.recv(1, { deadline: 0 }), "TimedOut", "no 13th byte")
      })))

    it.live("recv(n) takes exactly n bytes out of a larger coalesced arrival; results are copies", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair()
        yield* peerWrite(peer, seq(20))
        const first = yield* client.recv(5, T)
        assert.strictEqual(first.length, 5)
        assert.deepStrictEqual(first, seq(5))
        const rest = yield* client.recv(15, T)
        assert.strictEqual(rest.length, 15)
        assert.deepStrictEqual(rest, seq(15, 5))
        yield* failsWith(() => client.recv(1, { deadline: 0 }), "TimedOut", "nothing beyond the 20 bytes")
        // Later bytes land in the same slot memory: earlier results must not change.
        yield* peerWrite(peer, new Uint8Array(20).fill(0xee))
        const more = yield* client.recv(20, T)
        assert.deepStrictEqual(more, new Uint8Array(20).fill(0xee))
        assert.deepStrictEqual(first, seq(5))
        assert.deepStrictEqual(rest, seq(15, 5))
      })))

    it.live("recvInto fills exactly the caller's buffer and nothing around it", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair()
        const backing = new Uint8Array(16).fill(0xee)
        const view = backing.subarray(4, 11)
        const fiber = yield* forkWaiting(client.recvInto(view, T), "recvInto of 7 bytes")
        yield* peerWrite(peer, seq(3, 100))
        yield* expectWaiting(fiber, "recvInto of 7 bytes with 3 sent")
        yield* peerWrite(peer, seq(6, 103))
        yield* Fiber.join(fiber)
        assert.deepStrictEqual(view, seq(7, 100))
        assert.deepStrictEqual(backing.subarray(0, 4), new Uint8Array(4).fill(0xee))
        assert.deepStrictEqual(backing.subarray(11), new Uint8Array(5).fill(0xee))
        // The two bytes beyond the buffer stay for the next receive.
        assert.deepStrictEqual(yield* client.recv(2, T), seq(2, 107))
      })))

    it.live("recvv fills several buffers in order", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair()
        const buffers = [new Uint8Array(3), new Uint8Array(0), new Uint8Array(5), new Uint8Array(2)]
        const fiber = yield* forkWaiting(client.recvv(buffers, T), "recvv of 10 bytes")
        yield* peerWrite(peer, seq(4))
        yield* expectWaiting(fiber, "recvv of 10 bytes with 4 sent")
        yield* peerWrite(peer, seq(7, 4))
        yield* Fiber.join(fiber)
        assert.deepStrictEqual(buffers[0], seq(3))
        assert.deepStrictEqual(buffers[1], new Uint8Array(0))
        assert.deepStrictEqual(buffers[2], seq(5, 3))
        assert.deepStrictEqual(buffers[3], seq(2, 8))
        assert.deepStrictEqual(yield* client.recv(1, T), seq(1, 10))
      })))

    it.live("recv(0), recvInto of an empty buffer and recvv([]) succeed at once", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair()
        const empty = yield* client.recv(0, { deadline: 0 })
        assert.strictEqual(empty.length, 0)
        yield* client.recvInto(new Uint8Array(0), { deadline: 0 })
        yield* client.recvv([], { deadline: 0 })
        yield* client.recvv([new Uint8Array(0), new Uint8Array(0)], { deadline: 0 })
        // Nothing was consumed by them.
        yield* peerWrite(peer, seq(3))
        assert.deepStrictEqual(yield* client.recv(3, T), seq(3))
      })))
  })

  describe("sends", () => {
    it.live("sendv of several chunks arrives in order; send then reuse of the buffer is safe", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair()
        const all = yield* Effect.forkChild(readAll(peer))
        const a = seq(1000)
        const b = randomBytes(70_000)
        const c = seq(3, 50)
        yield* client.sendv([a, new Uint8Array(0), b, c], T)
        yield* client.sendv([], T)
        // A 1 MiB send must not keep a reference to the caller's buffer once it returns.
        const reused = new Uint8Array(MiB).fill(0x11)
        yield* client.send(reused, T)
        reused.fill(0x22)
        yield* client.send(reused, T)
        yield* client.done(T)
        const received = yield* Fiber.join(all)
        const expected = Buffer.concat([a, b, c, new Uint8Array(MiB).fill(0x11), new Uint8Array(MiB).fill(0x22)])
        assert.strictEqual(received.length, expected.length)
        assert.strictEqual(sha(received), sha(expected))
        peer.end()
      })))

    it.live("8 MiB each way, recv sizes above and below the 16 KiB slot, checksummed", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        const up = randomBytes(8 * MiB)
        const down = randomBytes(8 * MiB)
        const sendSizes = [100_000, 7, SLOT, 1_000_000, 3_000, 65_537]
        const recvSizes = [65_536, 1_000, SLOT, SLOT + 1, 7, 300_000, 4_096, 1]

        const sender = (socket: TcpSocket.TcpSocket, data: Uint8Array) =>
          Effect.gen(function*() {
            let offset = 0
            for (let i = 0; offset < data.length; i++) {
              const size = Math.min(sendSizes[i % sendSizes.length] ?? 1, data.length - offset)
              const chunk = data.subarray(offset, offset + size)
              if (i % 2 === 0) yield* socket.send(chunk, T)
              else yield* socket.sendv([chunk.subarray(0, size >> 1), chunk.subarray(size >> 1)], T)
              offset += size
            }
          })
        // Client to server through recv (fresh arrays).
        const receiveWithRecv = Effect.gen(function*() {
          const hash = createHash("sha256")
          let got = 0
          for (let i = 0; got < up.length; i++) {
            const size = Math.min(recvSizes[i % recvSizes.length] ?? 1, up.length - got)
            const bytes = yield* server.recv(size, T)
            assert.strictEqual(bytes.length, size)
            hash.update(bytes)
            got += size
          }
          return hash.digest("hex")
        })
        // Server to client through recvInto / recvv (caller's memory).
        const receiveInto = Effect.gen(function*() {
          const hash = createHash("sha256")
          const scratch = new Uint8Array(300_000)
          let got = 0
          for (let i = 0; got < down.length; i++) {
            const size = Math.min(recvSizes[i % recvSizes.length] ?? 1, down.length - got)
            const view = scratch.subarray(0, size)
            if (i % 3 === 2 && size > 1) {
              yield* client.recvv([view.subarray(0, size >> 1), view.subarray(size >> 1)], T)
            } else {
              yield* client.recvInto(view, T)
            }
            hash.update(view)
            got += size
          }
          return hash.digest("hex")
        })
        const [, , upSha, downSha] = yield* Effect.all(
          [sender(client, up), sender(server, down), receiveWithRecv, receiveInto],
          { concurrency: "unbounded" }
        )
        assert.strictEqual(upSha, sha(up))
        assert.strictEqual(downSha, sha(down))
        yield* closeBoth(client, server)
      })))
  })

  describe("PeerClosed", () => {
    it.live("3 bytes then FIN while recv(5) waits: PeerClosed with those bytes, then with none", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair()
        const waiting = yield* forkWaiting(client.recv(5, T), "recv(5) with nothing sent")
        peer.end(Uint8Array.of(1, 2, 3))
        const first = yield* failsWith(() => Fiber.join(waiting), "PeerClosed", "recv(5)")
        if (first._tag === "PeerClosed") assert.deepStrictEqual(first.bytes, Uint8Array.of(1, 2, 3))
        const second = yield* failsWith(() => client.recv(1, T), "PeerClosed", "recv(1) after PeerClosed")
        if (second._tag === "PeerClosed") assert.strictEqual(second.bytes.length, 0)
        const third = yield* failsWith(() => client.recvInto(new Uint8Array(4), { deadline: 0 }), "PeerClosed")
        if (third._tag === "PeerClosed") assert.strictEqual(third.bytes.length, 0)
      })))

    it.live("3 bytes then FIN already arrived: recv(5) fails PeerClosed with those bytes, then with none", () =>
      withTcp(Effect.gen(function*() {
        const { client } = yield* afterPeerFin(Uint8Array.of(1, 2, 3))
        const first = yield* failsWith(() => client.recv(5, T), "PeerClosed", "recv(5)")
        if (first._tag === "PeerClosed") assert.deepStrictEqual(first.bytes, Uint8Array.of(1, 2, 3))
        const second = yield* failsWith(() => client.recv(1, T), "PeerClosed", "recv(1) after PeerClosed")
        if (second._tag === "PeerClosed") assert.strictEqual(second.bytes.length, 0)
      })))

    it.live("a recv larger than the slot reaching the FIN fails PeerClosed with every byte, then with none", () =>
      withTcp(Effect.gen(function*() {
        const data = randomBytes(40 * KiB)
        const { client, peer } = yield* rawPair()
        const waiting = yield* waitingRecv(client, 64 * KiB)
        peer.end(data)
        const first = yield* failsWith(() => Fiber.join(waiting), "PeerClosed", "recv(64 KiB)")
        if (first._tag === "PeerClosed") assert.strictEqual(sha(first.bytes), sha(data))
        yield* failsWith(() => client.recv(1, T), "PeerClosed", "recv(1) after PeerClosed")
      })))

    it.live("bytes sent before the FIN are all readable first (beyond the slot size too)", () =>
      withTcp(Effect.gen(function*() {
        for (const size of [10, 100 * KiB]) {
          const data = randomBytes(size)
          const { client } = yield* afterPeerFin(data)
          const parts: Array<Uint8Array> = []
          const first = Math.min(7, size)
          parts.push(yield* client.recv(first, T))
          parts.push(yield* client.recv(size - first, T))
          assert.strictEqual(sha(...parts), sha(data), `size ${size}`)
          const end = yield* failsWith(() => client.recv(1, T), "PeerClosed")
          if (end._tag === "PeerClosed") assert.strictEqual(end.bytes.length, 0)
        }
      })))

    it.live("after the peer's FIN and our done (both directions ended), buffered bytes still reach recv", () =>
      withTcp(Effect.gen(function*() {
        for (const size of [10, 100 * KiB]) {
          const data = randomBytes(size)
          const { client, seen } = yield* afterPeerFin(data)
          yield* client.done(T)
          // Once the peer has our FIN too, Node may close the descriptor on its own: that is not `Closed`.
          yield* eventually(() => seen.ended, "the peer got our FIN")
          yield* turns()
          const bytes = yield* client.recv(size, T)
          assert.strictEqual(sha(bytes), sha(data), `size ${size}`)
          yield* failsWith(() => client.recv(1, T), "PeerClosed", `size ${size}`)
          yield* client.close(T)
        }
      })))
  })

  describe("half-close", () => {
    it.live("send after done fails BrokenPipe; the peer still sends and we still receive", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* client.send(text("abc"), T)
        yield* client.done(T)
        yield* failsWith(() => client.send(text("x"), T), "BrokenPipe", "send after done")
        yield* failsWith(() => client.sendv([text("x")], T), "BrokenPipe", "sendv after done")
        // The server sees our bytes, then our FIN.
        assert.deepStrictEqual(yield* server.recv(3, T), text("abc"))
        const fin = yield* failsWith(() => server.recv(1, T), "PeerClosed")
        if (fin._tag === "PeerClosed") assert.strictEqual(fin.bytes.length, 0)
        // The other direction still works.
        yield* server.send(text("hello"), T)
        assert.deepStrictEqual(yield* client.recv(5, T), text("hello"))
        yield* server.send(text("again"), T)
        yield* server.done(T)
        assert.deepStrictEqual(yield* client.recv(5, T), text("again"))
        const end = yield* failsWith(() => client.recv(1, T), "PeerClosed")
        if (end._tag === "PeerClosed") assert.strictEqual(end.bytes.length, 0)
        yield* closeBoth(client, server)
      })))
  })

  describe("ConnReset", () => {
    it.live("a pending recv fails ConnReset when the peer resets; so do later calls", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair()
        const fiber = yield* forkWaiting(client.recv(5, T), "recv(5) with nothing sent")
        peer.resetAndDestroy()
        const error = yield* failsWith(() => Fiber.join(fiber), "ConnReset", "pending recv")
        assert.strictEqual(error.errno, "ECONNRESET")
        yield* failsWith(() => client.recv(1, T), "ConnReset", "later recv")
        yield* failsWith(() => client.send(text("x"), T), ["ConnReset", "BrokenPipe"], "send after reset")
      })))

    it.live("bytes that arrived before the reset are still readable, then ConnReset", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair()
        yield* peerWrite(peer, seq(10))
        yield* turns()
        peer.resetAndDestroy()
        // Whether the reset reached this end before the receives or not, the bytes come first.
        yield* turns()
        assert.deepStrictEqual(yield* client.recv(6, T), seq(6))
        assert.deepStrictEqual(yield* client.recv(4, T), seq(4, 6))
        yield* failsWith(() => client.recv(1, T), "ConnReset")
      })))

    it.live("send after the peer reset fails ConnReset or BrokenPipe", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair()
        peer.resetAndDestroy()
        // A send taken by the kernel before the reset arrived succeeds; once it arrived, sends fail.
        let outcome: Exit.Exit<void, { readonly _tag: string }> = Exit.void
        yield* eventually(
          Effect.map(Effect.exit(client.send(new Uint8Array(64 * KiB), T)), (exit) => {
            outcome = exit
            return Exit.isFailure(exit)
          }),
          "a send fails after the peer's reset",
          50
        )
        const error = Exit.findError(outcome)
        assert.isTrue(Result.isSuccess(error), "a send after a reset must fail with a typed error")
        if (Result.isSuccess(error)) assert.include(["ConnReset", "BrokenPipe"], error.success._tag)
        yield* failsWith(() => client.send(text("x"), T), ["ConnReset", "BrokenPipe"], "later send")
      })))
  })

  describe("Closed", () => {
    const everyCall = (socket: TcpSocket.TcpSocket, label: string) =>
      Effect.gen(function*() {
        yield* failsWith(() => socket.send(text("x"), T), "Closed", `${label}: send`)
        yield* failsWith(() => socket.sendv([text("x")], T), "Closed", `${label}: sendv`)
        yield* failsWith(() => socket.recv(1, T), "Closed", `${label}: recv`)
        yield* failsWith(() => socket.recv(0, T), "Closed", `${label}: recv(0)`)
        yield* failsWith(() => socket.recvInto(new Uint8Array(1), T), "Closed", `${label}: recvInto`)
        yield* failsWith(() => socket.recvv([new Uint8Array(1)], T), "Closed", `${label}: recvv`)
        yield* failsWith(() => socket.done(T), "Closed", `${label}: done`)
        yield* failsWith(() => socket.close(T), "Closed", `${label}: close`)
        yield* failsWith(() => TcpSocket.recv(socket, 1, { deadline: 0 }), "Closed", `${label}: TcpSocket.recv`)
        const error = yield* failsWith(() => socket.send(text("x")), "Closed", `${label}: send`)
        assert.strictEqual(error.errno, "EBADF")
      })

    it.live("every call after close fails Closed; abort afterwards succeeds", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* closeBoth(client, server)
        yield* everyCall(client, "after close")
        yield* everyCall(server, "after close")
        yield* client.abort
        yield* client.abort
      })))

    it.live("every call after abort fails Closed; abort twice succeeds; the peer sees the end", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* client.abort
        yield* client.abort
        yield* everyCall(client, "after abort")
        yield* failsWith(() => server.recv(1, T), ["PeerClosed", "ConnReset"], "peer of an aborted socket")
        yield* server.abort
        yield* everyCall(server, "after abort")
      })))

    it.live("a socket used after its scope closed fails Closed and never throws", () =>
      withTcp(Effect.gen(function*() {
        const afterSuccess = yield* Effect.scoped(Effect.map(pair, ({ client, server }) => [client, server] as const))
        yield* everyCall(afterSuccess[0], "after scope success")
        yield* everyCall(afterSuccess[1], "after scope success")
        const leaked: Array<TcpSocket.TcpSocket> = []
        const exit = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
          const { client, server } = yield* pair
          leaked.push(client, server)
          return yield* Effect.fail("boom" as const)
        })))
        assert.isTrue(Exit.isFailure(exit))
        assert.strictEqual(leaked.length, 2)
        for (const socket of leaked) yield* everyCall(socket, "after scope failure")
      })))

    it.live("a recv and a send waiting when the socket is aborted fail Closed", () =>
      withTcp(Effect.gen(function*() {
        const { client } = yield* rawPair((peer) => {
          peer.pause()
        })
        const reading = yield* forkWaiting(client.recv(1, { deadline: -1 }), "recv(1) with nothing sent")
        const writing = yield* forkWaiting(client.send(new Uint8Array(64 * MiB), { deadline: -1 }), "64 MiB to a paused peer")
        yield* expectWaiting(reading, "recv(1) with nothing sent")
        yield* client.abort
        yield* failsWith(() => Fiber.join(reading), "Closed", "pending recv")
        yield* failsWith(() => Fiber.join(writing), "Closed", "pending send")
      })))
  })

  describe("graceful close", () => {
    it.live("close succeeds against a peer that ends after our FIN, discarding what it sent", () =>
      withTcp(Effect.gen(function*() {
        const noise = randomBytes(MiB)
        // The peer wrote its noise before rawPair returned: it is on its way or here already.
        const { client, seen } = yield* rawPair((peer) => {
          peer.write(noise)
          peer.on("end", () => peer.end())
          peer.resume()
        })
        yield* turns()
        yield* client.close({ timeout: "5 seconds" })
        assert.isTrue(seen.ended, "the peer saw our FIN (it ends only after that)")
        yield* expectPoolIdle
      })))

    it.live("close against a peer that never sends FIN fails TimedOut at its deadline and releases the socket", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer, seen } = yield* rawPair((peer) => {
          peer.resume()
        })
        const start = Date.now()
        const error = yield* failsWith(() => client.close({ timeout: "200 millis" }), "TimedOut")
        assert.isAtLeast(Date.now() - start, 180, "close returned before its deadline")
        assert.strictEqual(error.errno, "ETIMEDOUT")
        // Released anyway, while the peer is still open.
        yield* expectPoolIdle
        yield* eventually(() => seen.ended, "the peer saw our FIN")
        yield* failsWith(() => client.recv(1, T), "Closed")
        // Our descriptor is gone: bytes the peer sends now are answered with a reset.
        yield* eventually(() => {
          if (seen.error !== undefined || seen.closed) return true
          peer.write(seq(10))
          return false
        }, "the peer's writes fail")
        assert.include(["ECONNRESET", "EPIPE"], seen.error, "the peer learns the socket is gone")
      })))

    it.live("close(deadline) on Deadline.after also times out and releases", () =>
      withTcp(Effect.gen(function*() {
        const { client } = yield* rawPair((peer) => {
          peer.resume()
        })
        const deadline = yield* Deadline.after("150 millis")
        const start = Date.now()
        yield* failsWith(() => client.close({ deadline }), "TimedOut")
        assert.isAtLeast(Date.now() - start, 130)
        yield* expectPoolIdle
      })))

    it.live("1 MiB sent right before close arrives completely", () =>
      withTcp(Effect.gen(function*() {
        const data = randomBytes(MiB)
        const { client, peer } = yield* rawPair()
        const all = yield* Effect.forkChild(readAll(peer))
        yield* client.send(data, T)
        const closing = yield* Effect.forkChild(client.close({ timeout: "5 seconds" }))
        const received = yield* Fiber.join(all)
        assert.strictEqual(received.length, data.length)
        assert.strictEqual(sha(received), sha(data))
        peer.end()
        yield* Fiber.join(closing)
      })))
  })

  describe("Scope", () => {
    it.live("after success the peer sees our FIN at once and the slot returns once the peer ends", () =>
      withTcp(Effect.gen(function*() {
        const { server, next } = yield* rawListen()
        yield* Effect.scoped(Effect.gen(function*() {
          const client = yield* TcpClient.connect(server.address, { ...T, closeTimeout: "10 seconds" })
          yield* client.send(text("bye"), T)
        }))
        const { socket } = yield* next
        // The scope did not wait for the peer: our FIN is out, the linger goes on in the background.
        assert.deepStrictEqual(new Uint8Array(yield* readAll(socket)), text("bye"))
        assert.strictEqual(yield* inUse, 1, "the graceful close lingers until the peer's FIN")
        socket.end()
        yield* expectPoolIdle
      })))

    it.live("two ends of a connection in one scope do not wait on each other", () =>
      withTcp(Effect.gen(function*() {
        yield* Effect.scoped(Effect.gen(function*() {
          const { client, server } = yield* pair
          yield* client.send(text("ping"), T)
          assert.deepStrictEqual(yield* server.recv(4, T), text("ping"))
        }))
        yield* expectPoolIdle
      })))

    it.live("after a failure the socket is aborted at once: the peer sees a reset, the slot returns", () =>
      withTcp(Effect.gen(function*() {
        const { server, next } = yield* rawListen((socket) => {
          // Bytes we never read make the abort a reset.
          socket.write(randomBytes(MiB))
          socket.resume()
        })
        const exit = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
          const client = yield* TcpClient.connect(server.address, { ...T, closeTimeout: "10 seconds" })
          yield* client.send(text("x"), T)
          // The peer has written its 1 MiB: unread bytes on this end when the scope fails.
          yield* next
          yield* turns()
          return yield* Effect.fail("boom" as const)
        })))
        assert.isTrue(Exit.isFailure(exit))
        const { seen } = yield* next
        // Released without waiting for the peer, which never ends.
        yield* expectPoolIdle
        yield* eventually(() => seen.error !== undefined, "the peer sees a reset")
        assert.include(["ECONNRESET", "EPIPE"], seen.error)
      })))

    it.live("after interruption the socket is aborted at once: the peer sees the close, the slot returns", () =>
      withTcp(Effect.gen(function*() {
        const received: Array<Buffer> = []
        const { server, next } = yield* rawListen((socket) => {
          socket.on("data", (chunk: Buffer) => received.push(chunk))
        })
        const fiber = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
          const client = yield* TcpClient.connect(server.address, { ...T, closeTimeout: "10 seconds" })
          yield* client.send(text("x"), T)
          return yield* client.recv(1, { deadline: -1 })
        })))
        const { seen } = yield* next
        yield* eventually(() => received.length > 0, "the peer got our byte")
        assert.isUndefined(fiber.pollUnsafe())
        yield* Fiber.interrupt(fiber)
        const exit = yield* Effect.exit(Fiber.join(fiber))
        assert.isTrue(Exit.isFailure(exit) && Exit.hasInterrupts(exit))
        // Released without waiting for the peer, which never ends.
        yield* expectPoolIdle
        yield* eventually(() => seen.ended || seen.error !== undefined, "the peer sees the end")
      })))
  })

  describe("deadlines", () => {
    it.live("deadline 0: recv only takes bytes already delivered; a small send succeeds at once", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* failsWith(() => client.recv(4, { deadline: 0 }), "TimedOut", "nothing sent yet")
        yield* server.send(seq(4), { deadline: 0 })
        // Poll with deadline 0 until the bytes are here: each failed try consumed nothing.
        let got: Uint8Array | undefined
        let misses = 0
        yield* eventually(
          Effect.map(Effect.exit(client.recv(4, { deadline: 0 })), (exit) => {
            if (Exit.isSuccess(exit)) got = exit.value
            else {
              const error = Exit.findError(exit)
              assert.isTrue(Result.isSuccess(error) && error.success._tag === "TimedOut", "a miss is TimedOut")
              misses++
            }
            return got !== undefined
          }),
          "recv(4, deadline 0) gets the 4 bytes sent"
        )
        assert.deepStrictEqual(got, seq(4), `after ${misses} misses`)
        yield* failsWith(() => client.recv(1, { deadline: 0 }), "TimedOut", "nothing left")
        yield* failsWith(() => client.recvInto(new Uint8Array(1), { deadline: 0 }), "TimedOut")
        yield* failsWith(() => client.recvv([new Uint8Array(1)], { deadline: 0 }), "TimedOut")
        yield* closeBoth(client, server)
      })))

    it.live("a past deadline: recv succeeds from buffered bytes, fails TimedOut without them", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        yield* failsWith(() => client.recv(2, { deadline: 1 }), "TimedOut")
        const past = (yield* Deadline.now) - 1
        yield* failsWith(() => client.recv(2, { deadline: past }), "TimedOut")
        yield* server.send(seq(4), T)
        assert.deepStrictEqual(yield* client.recv(2, T), seq(2))
        // The other 2 bytes arrived with the first: they are buffered now.
        assert.deepStrictEqual(yield* client.recv(2, { deadline: 1 }), seq(2, 2))
        yield* failsWith(() => client.recv(2, { deadline: 1 }), "TimedOut")
        yield* closeBoth(client, server)
      })))

    it.live("deadline -1 waits, and completes when the data arrives", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        const fiber = yield* forkWaiting(client.recv(3, { deadline: -1 }), "recv(3, deadline -1) with nothing sent")
        yield* server.send(seq(3), { deadline: -1 })
        assert.deepStrictEqual(yield* Fiber.join(fiber), seq(3))
        yield* client.send(seq(3), { deadline: Deadline.never })
        assert.deepStrictEqual(yield* server.recv(3, { deadline: Deadline.never }), seq(3))
        yield* closeBoth(client, server)
      })))

    it.live("timeout, and the earlier of deadline and timeout wins", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        let start = Date.now()
        const error = yield* failsWith(() => client.recv(1, { timeout: "150 millis" }), "TimedOut")
        assert.isAtLeast(Date.now() - start, 130)
        assert.strictEqual(error.errno, "ETIMEDOUT")
        // deadline later than timeout
        start = Date.now()
        const far = (yield* Deadline.now) + 60_000
        yield* failsWith(() => client.recv(1, { deadline: far, timeout: "100 millis" }), "TimedOut")
        assert.isAtLeast(Date.now() - start, 80)
        // timeout later than deadline
        start = Date.now()
        const near = yield* Deadline.after("100 millis")
        yield* failsWith(() => client.recvInto(new Uint8Array(1), { deadline: near, timeout: "60 seconds" }), "TimedOut")
        assert.isAtLeast(Date.now() - start, 80)
        // Nothing was consumed and the socket still works.
        yield* server.send(seq(2), T)
        assert.deepStrictEqual(yield* client.recv(2, { timeout: "5 seconds" }), seq(2))
        yield* closeBoth(client, server)
      })))

    it.live("a recv up to the slot size that times out or is interrupted consumes nothing", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        const data = randomBytes(SLOT)
        // Interrupted with part of the bytes there (or on their way: it must consume nothing either way).
        const fiber = yield* forkWaiting(client.recv(10, T), "recv(10)")
        yield* server.send(data.subarray(0, 4), T)
        yield* expectWaiting(fiber, "recv(10) with 4 bytes sent")
        yield* Fiber.interrupt(fiber)
        const exit = yield* Effect.exit(Fiber.join(fiber))
        assert.isTrue(Exit.isFailure(exit) && Exit.hasInterrupts(exit) && !Exit.hasFails(exit))
        // Timed out with part of the bytes there, at exactly the slot size.
        yield* server.send(data.subarray(4, 10 * KiB), T)
        yield* turns()
        const start = Date.now()
        yield* failsWith(() => client.recv(SLOT, { timeout: "150 millis" }), "TimedOut")
        assert.isAtLeast(Date.now() - start, 130)
        yield* failsWith(() => client.recvv([new Uint8Array(SLOT - 1), new Uint8Array(1)], { deadline: 0 }), "TimedOut")
        // A later recv gets every byte.
        yield* server.send(data.subarray(10 * KiB), T)
        const all = yield* client.recv(SLOT, T)
        assert.strictEqual(sha(all), sha(data))
        yield* closeBoth(client, server)
      })))

    // On TestClock: the timeout fires once the recv has taken bytes, however slow the machine.
    it.effect("a recv larger than the slot that stops halfway makes later recvs fail ConnReset", () =>
      withTcp(Effect.gen(function*() {
        // Timed out halfway.
        const first = yield* pair
        const timing = yield* forkWaiting(first.client.recv(64 * KiB, { timeout: "300 millis" }), "recv(64 KiB)")
        yield* first.server.send(randomBytes(20 * KiB), T)
        yield* eventually(() => bytesTaken(first.client) >= 20 * KiB, "the recv took the 20 KiB sent")
        yield* TestClock.adjust("300 millis")
        yield* failsWith(() => Fiber.join(timing), "TimedOut")
        yield* first.server.send(randomBytes(64 * KiB), T)
        yield* failsWith(() => first.client.recv(1, T), "ConnReset", "after a timed out large recv")
        yield* failsWith(() => first.client.recvInto(new Uint8Array(1), T), "ConnReset")
        // Interrupted halfway.
        const second = yield* pair
        const fiber = yield* forkWaiting(second.client.recv(64 * KiB, { deadline: -1 }), "recv(64 KiB)")
        yield* second.server.send(randomBytes(20 * KiB), T)
        yield* eventually(() => bytesTaken(second.client) >= 20 * KiB, "the recv took the 20 KiB sent")
        yield* expectWaiting(fiber, "recv(64 KiB) with 20 KiB sent")
        yield* Fiber.interrupt(fiber)
        yield* second.server.send(randomBytes(64 * KiB), T)
        yield* failsWith(() => second.client.recv(1, T), "ConnReset", "after an interrupted large recv")
      })))

    it.live("a send the peer never reads fails TimedOut at its deadline; later sends ConnReset, recv still works", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair((peer) => {
          peer.pause()
        })
        const start = Date.now()
        const error = yield* failsWith(() => client.send(new Uint8Array(64 * MiB), { timeout: "300 millis" }), "TimedOut")
        assert.isAtLeast(Date.now() - start, 280, "send returned before its deadline")
        assert.strictEqual(error.errno, "ETIMEDOUT")
        yield* failsWith(() => client.send(text("x"), T), "ConnReset", "send after a timed out send")
        yield* failsWith(() => client.sendv([text("x")], { deadline: 0 }), "ConnReset", "sendv after it")
        yield* peerWrite(peer, text("hi"))
        assert.deepStrictEqual(yield* client.recv(2, T), text("hi"))
      })))

    it.live("a send with deadline 0 that the kernel cannot take at once fails TimedOut; later sends ConnReset", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair((peer) => {
          peer.pause()
        })
        yield* client.send(seq(10), { deadline: 0 })
        yield* failsWith(() => client.send(new Uint8Array(64 * MiB), { deadline: 0 }), "TimedOut", "64 MiB at once")
        yield* failsWith(() => client.send(text("x"), T), "ConnReset", "send after it")
        yield* peerWrite(peer, text("ok"))
        assert.deepStrictEqual(yield* client.recv(2, { timeout: "5 seconds" }), text("ok"))
      })))

    for (const how of ["times out", "is interrupted"] as const) {
      it.live(`a send that ${how} lets go of the caller's buffer: bytes written into it later never reach the peer`, () =>
        withTcp(Effect.gen(function*() {
          const received: Array<Buffer> = []
          let ended = false
          const { client, peer } = yield* rawPair((peer) => {
            peer.pause()
            peer.on("data", (chunk: Buffer) => received.push(chunk))
            peer.on("end", () => {
              ended = true
              peer.end()
            })
          })
          const buffer = new Uint8Array(16 * MiB).fill(0xaa)
          if (how === "times out") {
            yield* failsWith(() => client.send(buffer, { timeout: "200 millis" }), "TimedOut")
          } else {
            const fiber = yield* forkWaiting(client.send(buffer, { deadline: -1 }), "16 MiB to a paused peer")
            yield* Fiber.interrupt(fiber)
          }
          // The caller reuses its buffer at once, then the peer reads everything we ever send:
          // our FIN comes after the last byte written, whoever wrote it.
          buffer.fill(0xbb)
          peer.resume()
          yield* client.close(T)
          assert.isTrue(ended, "the peer got our FIN")
          const bytes = Buffer.concat(received)
          assert.isAbove(bytes.length, 0, "the peer got part of the send")
          assert.isBelow(bytes.length, 16 * MiB, "the whole send went out")
          assert.strictEqual(bytes.indexOf(0xbb), -1, "bytes written after the send returned reached the peer")
        })))
    }

    it.live("an interrupted send makes later sends fail ConnReset", () =>
      withTcp(Effect.gen(function*() {
        const { client, peer } = yield* rawPair((peer) => {
          peer.pause()
        })
        const fiber = yield* forkWaiting(client.send(new Uint8Array(64 * MiB), { deadline: -1 }), "64 MiB to a paused peer")
        yield* Fiber.interrupt(fiber)
        yield* failsWith(() => client.send(text("x"), T), "ConnReset")
        yield* peerWrite(peer, text("ok"))
        assert.deepStrictEqual(yield* client.recv(2, T), text("ok"))
      })))

    it.effect("a recv deadline runs on Effect's clock (TestClock); the I/O is real", () =>
      Effect.gen(function*() {
        yield* Effect.scoped(Effect.gen(function*() {
          const { client, server } = yield* pair
          const t0 = yield* Deadline.now
          const fiber = yield* forkWaiting(client.recv(4, { timeout: "50 millis" }), "recv(4), virtual 50 ms timeout")
          // Part of the scenario: real time passes, well beyond the timeout, and virtual time does not.
          yield* TestClock.withLive(Effect.sleep("300 millis"))
          assert.isUndefined(fiber.pollUnsafe(), "a virtual 50 ms timeout fired in real time")
          yield* TestClock.adjust("50 millis")
          yield* failsWith(() => Fiber.join(fiber), "TimedOut")
          const t1 = yield* Deadline.now
          assert.strictEqual(t1, t0 + 50)
          // An absolute deadline on Deadline.now.
          const second = yield* forkWaiting(client.recv(4, { deadline: t1 + 1000 }), "recv(4), virtual deadline")
          yield* TestClock.adjust("999 millis")
          assert.isUndefined(second.pollUnsafe(), "fired before its deadline")
          yield* TestClock.adjust("1 millis")
          yield* failsWith(() => Fiber.join(second), "TimedOut")
          // Real bytes still arrive while virtual time stands still.
          yield* server.send(seq(4), T)
          assert.deepStrictEqual(yield* client.recv(4, { timeout: "1 second" }), seq(4))
          yield* Effect.all([client.close(), server.close()], { concurrency: "unbounded" })
        }))
        yield* expectPoolIdle
      }).pipe(Effect.provide(TestTcp)))

    it.live("deadlines beyond Node's longest timer (about 24.8 days) wait instead of firing at once", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        const recv = yield* forkWaiting(client.recv(4, { timeout: "30 days" }), "recv(4), 30-day timeout")
        const send = yield* forkWaiting(server.recvSome(1, { deadline: Date.now() + 40 * 86_400_000 }), "recvSome")
        // Part of the scenario: Node fires a timer it cannot hold after 1 ms; let real time pass beyond that.
        yield* Effect.sleep("100 millis")
        assert.isUndefined(recv.pollUnsafe(), "a 30-day recv timeout fired")
        assert.isUndefined(send.pollUnsafe(), "a 40-day recvSome deadline fired")
        yield* server.send(seq(4), T)
        yield* client.send(seq(1), T)
        assert.deepStrictEqual(yield* Fiber.join(recv), seq(4))
        assert.deepStrictEqual(yield* Fiber.join(send), seq(1))
      })))
  })

  describe("concurrency", () => {
    it.live("concurrent recvs complete in call order", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        const first = yield* waitingRecv(client, 4)
        const second = yield* waitingRecv(client, 4)
        yield* server.send(seq(8), T)
        assert.deepStrictEqual(yield* Fiber.join(first), seq(4))
        assert.deepStrictEqual(yield* Fiber.join(second), seq(4, 4))
        yield* closeBoth(client, server)
      })))

    it.live("a recv waiting behind another still obeys its own deadline and consumes nothing", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        const first = yield* waitingRecv(client, 4)
        yield* failsWith(() => client.recv(4, { timeout: "100 millis" }), "TimedOut", "queued recv")
        yield* server.send(seq(8), T)
        assert.deepStrictEqual(yield* Fiber.join(first), seq(4))
        assert.deepStrictEqual(yield* client.recv(4, T), seq(4, 4))
        yield* closeBoth(client, server)
      })))

    it.live("an interrupted queued recv gives up its turn without consuming anything", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        const first = yield* waitingRecv(client, 4)
        const second = yield* waitingRecv(client, 4)
        yield* Fiber.interrupt(second)
        const third = yield* waitingRecv(client, 4)
        yield* server.send(seq(8), T)
        assert.deepStrictEqual(yield* Fiber.join(first), seq(4))
        assert.deepStrictEqual(yield* Fiber.join(third), seq(4, 4))
        yield* closeBoth(client, server)
      })))

    it.live("concurrent sends do not interleave", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        const size = 256 * KiB
        const values = [0xaa, 0xbb, 0xcc] as const
        const [, received] = yield* Effect.all([
          Effect.all(values.map((v) => client.send(new Uint8Array(size).fill(v), T)), { concurrency: "unbounded" }),
          server.recv(size * values.length, T)
        ], { concurrency: "unbounded" })
        const seenValues: Array<number> = []
        for (let block = 0; block < values.length; block++) {
          const part = received.subarray(block * size, (block + 1) * size)
          const v = part[0] ?? -1
          assert.isTrue(part.every((b) => b === v), `block ${block} is interleaved`)
          seenValues.push(v)
        }
        assert.sameMembers(seenValues, [...values])
        yield* closeBoth(client, server)
      })))

    it.live("a send and a recv run at the same time", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        // A send completes while a recv waits.
        const reading = yield* waitingRecv(client, 5)
        yield* client.send(text("hello"), T)
        assert.isUndefined(reading.pollUnsafe())
        assert.deepStrictEqual(yield* server.recv(5, T), text("hello"))
        yield* server.send(text("world"), T)
        assert.deepStrictEqual(yield* Fiber.join(reading), text("world"))
        // A recv completes while a send waits for a peer that does not read.
        const big = randomBytes(32 * MiB)
        const writing = yield* forkWaiting(client.send(big, { timeout: "10 seconds" }), "32 MiB to a peer that does not read")
        yield* server.send(text("abc"), T)
        assert.deepStrictEqual(yield* client.recv(3, T), text("abc"))
        assert.isUndefined(writing.pollUnsafe())
        const drained = yield* server.recv(big.length, { timeout: "10 seconds" })
        yield* Fiber.join(writing)
        assert.strictEqual(sha(drained), sha(big))
        yield* closeBoth(client, server)
      })))
  })

  describe("invalid input", () => {
    it.live("bad lengths, buffers, chunks, deadlines and timeouts fail InvalidArgument", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        const bad = (label: string, make: () => Effect.Effect<unknown, { readonly _tag: string }>) =>
          Effect.gen(function*() {
            const error = yield* failsWith(make, "InvalidArgument", label)
            assert.strictEqual(Reflect.get(error, "errno"), "EINVAL", label)
          })
        yield* bad("recv(-1)", () => client.recv(-1, T))
        yield* bad("recv(1.5)", () => client.recv(1.5, T))
        yield* bad("recv(NaN)", () => client.recv(NaN, T))
        yield* bad("recv(Infinity)", () => client.recv(Infinity, T))
        yield* bad("recv('4')", () => client.recv("4" as never, T))
        yield* bad("recvInto('x')", () => client.recvInto("x" as never, T))
        yield* bad("recvInto(undefined)", () => client.recvInto(undefined as never, T))
        yield* bad("recvv('x')", () => client.recvv("x" as never, T))
        yield* bad("recvv([buf, 5])", () => client.recvv([new Uint8Array(1), 5] as never, T))
        yield* bad("send(null)", () => client.send(null as never, T))
        yield* bad("send('x')", () => client.send("x" as never, T))
        yield* bad("sendv([1])", () => client.sendv([1] as never, T))
        yield* bad("sendv(null)", () => client.sendv(null as never, T))
        yield* bad("TcpSocket.send(socket, null)", () => TcpSocket.send(client, null as never))
        yield* bad("TcpSocket.recv(-1)(socket)", () => TcpSocket.recv(-1)(client))
        const badOptions = [
          { deadline: NaN },
          { deadline: -2 },
          { deadline: Infinity },
          { deadline: -Infinity },
          { deadline: 0.5 - 1 },
          { deadline: "1" as never },
          { timeout: "garbage" as never },
          { deadline: 0, timeout: "garbage" as never }
        ]
        for (const options of badOptions) {
          const label = JSON.stringify(options, (_, v: unknown) => typeof v === "number" ? String(v) : v)
          yield* bad(`recv ${label}`, () => client.recv(1, options))
          yield* bad(`recvInto ${label}`, () => client.recvInto(new Uint8Array(1), options))
          yield* bad(`recvv ${label}`, () => client.recvv([new Uint8Array(1)], options))
          yield* bad(`send ${label}`, () => client.send(text("x"), options))
          yield* bad(`sendv ${label}`, () => client.sendv([text("x")], options))
          yield* bad(`done ${label}`, () => client.done(options))
          yield* bad(`close ${label}`, () => client.close(options))
        }
        // Rejected calls had no effect: nothing was sent or consumed, the socket is open.
        yield* failsWith(() => server.recv(1, { deadline: 0 }), "TimedOut", "nothing was sent")
        yield* server.send(seq(3), T)
        assert.deepStrictEqual(yield* client.recv(3, T), seq(3))
        yield* client.send(seq(3), T)
        assert.deepStrictEqual(yield* server.recv(3, T), seq(3))
        yield* closeBoth(client, server)
      })))
  })

  describe("module functions, addresses", () => {
    it.live("data-first and data-last module functions", () =>
      withTcp(Effect.gen(function*() {
        const { client, server } = yield* pair
        assert.isTrue(TcpSocket.isTcpSocket(client))
        assert.isFalse(TcpSocket.isTcpSocket({}))
        assert.isFalse(TcpSocket.isTcpSocket(null))
        yield* TcpSocket.send(client, seq(2), T)
        yield* pipe(client, TcpSocket.send(seq(2, 2)))
        yield* TcpSocket.sendv(client, [seq(1, 4), seq(1, 5)], T)
        yield* pipe(client, TcpSocket.sendv([seq(2, 6)], T))
        assert.deepStrictEqual(yield* TcpSocket.recv(server, 2, T), seq(2))
        assert.deepStrictEqual(yield* pipe(server, TcpSocket.recv(1)), seq(1, 2))
        const into = new Uint8Array(1)
        yield* TcpSocket.recvInto(server, into, T)
        assert.deepStrictEqual(into, seq(1, 3))
        yield* pipe(server, TcpSocket.recvInto(into, T))
        assert.deepStrictEqual(into, seq(1, 4))
        const a = new Uint8Array(1)
        const b = new Uint8Array(1)
        yield* TcpSocket.recvv(server, [a], T)
        yield* pipe(server, TcpSocket.recvv([b]))
        assert.deepStrictEqual([a, b], [seq(1, 5), seq(1, 6)])
        assert.deepStrictEqual(yield* TcpSocket.recv(server, 1, { deadline: 0 }), seq(1, 7))
        yield* TcpSocket.done(client, T)
        yield* failsWith(() => TcpSocket.send(client, seq(1)), "BrokenPipe")
        yield* failsWith(() => pipe(server, TcpSocket.recv(1, T)), "PeerClosed")
        yield* pipe(server, TcpSocket.done())
        yield* failsWith(() => TcpSocket.recv(client, 1, T), "PeerClosed")
        yield* Effect.all([TcpSocket.close(client, T), pipe(server, TcpSocket.close(T))], { concurrency: "unbounded" })
        yield* TcpSocket.abort(client)
        yield* pipe(server, TcpSocket.abort)
        yield* failsWith(() => pipe(server, TcpSocket.close()), "Closed")
      })))

    it.live("localAddress and remoteAddress over IPv4", () =>
      withTcp(Effect.gen(function*() {
        const { client, server, listener } = yield* pair
        const cl = client.localAddress
        const cr = client.remoteAddress
        const sl = server.localAddress
        const sr = server.remoteAddress
        if (cl === undefined || cr === undefined || sl === undefined || sr === undefined) {
          return assert.fail("addresses of a connected socket are known")
        }
        assert.strictEqual(NetAddress.formatInet(cr), `127.0.0.1:${listener.port}`)
        assert.strictEqual(NetAddress.formatInet(sl), `127.0.0.1:${listener.port}`)
        assert.strictEqual(NetAddress.formatInet(cl), NetAddress.formatInet(sr))
        assert.notStrictEqual(cl.port, listener.port)
        const raw = yield* rawPair()
        assert.strictEqual(raw.client.localAddress?.port, raw.peer.remotePort)
        assert.strictEqual(raw.client.remoteAddress?.port, raw.server.port)
        yield* closeBoth(client, server)
      })))

    it.live("localAddress and remoteAddress over IPv6 loopback, with data", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("[::1]:0")
        const client = yield* TcpClient.connect(`[::1]:${listener.port}`, T)
        const server = yield* listener.accept(T)
        const cr = client.remoteAddress
        const sr = server.remoteAddress
        if (cr === undefined || sr === undefined) return assert.fail("addresses of a connected socket are known")
        assert.strictEqual(NetAddress.formatInet(cr), `[::1]:${listener.port}`)
        assert.strictEqual(sr._tag, "InetAddressV6")
        assert.strictEqual(sr.port, client.localAddress?.port)
        yield* client.send(seq(100), T)
        assert.deepStrictEqual(yield* server.recv(100, T), seq(100))
        yield* closeBoth(client, server)
      })))
  })

  describe("other pool settings", () => {
    it.live("a 1 KiB slot carries a 1 MiB exchange through recvs of every size", () =>
      withTcp(
        Effect.gen(function*() {
          const { client, server } = yield* pair
          const data = randomBytes(MiB)
          const sizes = [1024, 1023, 1025, 1, 5000]
          const [, parts] = yield* Effect.all([
            client.send(data, T),
            Effect.gen(function*() {
              const parts: Array<Uint8Array> = []
              let got = 0
              for (let i = 0; got < data.length; i++) {
                const n = Math.min(sizes[i % sizes.length] ?? 1, data.length - got)
                parts.push(yield* server.recv(n, T))
                got += n
              }
              return parts
            })
          ], { concurrency: "unbounded" })
          assert.strictEqual(sha(...parts), sha(data))
          // 1024 is the slot size here: atomic; 1025 is not.
          yield* client.send(seq(500), T)
          yield* turns()
          yield* failsWith(() => server.recv(1024, { deadline: 0 }), "TimedOut")
          yield* client.send(seq(524, 500), T)
          assert.deepStrictEqual(yield* server.recv(1024, T), seq(1024))
          // A recv(1025) takes bytes as they come: stopped after taking some, the stream is at an unknown point.
          const taken = bytesTaken(server)
          const large = yield* forkWaiting(server.recv(1025, { deadline: -1 }), "recv(1025)")
          yield* client.send(seq(600), T)
          yield* eventually(() => bytesTaken(server) >= taken + 600, "recv(1025) took the 600 bytes sent")
          yield* Fiber.interrupt(large)
          yield* failsWith(() => server.recv(1, T), "ConnReset")
          yield* closeBoth(client, server)
        }),
        TcpNode.layerWith({ slots: 4, bufferSize: 1024 })
      ))
  })
})
