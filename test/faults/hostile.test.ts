/**
 * Hostile peers on loopback: one that never reads (many senders block, then
 * fail TimedOut at their deadline, without copying what they send), one that
 * floods (from its own process; this process's RSS is sampled against the
 * pool's size), one that trickles a byte at a time (exact receives of every
 * size around a 1 KiB slot), one that resets mid-transfer or goes away while
 * we send, and half-closed peers in both orders.
 *
 * What test/TcpSocket.test.ts and test/TcpStorage.test.ts already prove for a
 * single socket (a 12-byte trickle, 10 bytes then reset, one 32 MiB flood, a
 * 64 MiB send to a paused peer) is not repeated: these run many sockets at
 * once, larger transfers, and measure memory.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { spawn } from "node:child_process"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"
import { TcpClient, TcpListener, TcpNode, TcpStorage } from "../../src/index.ts"
import type { TcpSocket } from "../../src/index.ts"
import { awaitDone, checkFdLeaks, forkWaiting, rawServer, readAll, turns } from "../helpers.ts"
import { failsPeerClosed, failsWith, KiB, MiB, rss, sha256, waitUntil, withPool } from "./support.ts"

const T = { timeout: "5 seconds" } as const
const floodChild = fileURLToPath(new URL("./flood-child.ts", import.meta.url))

/** Bytes 0..n of a pattern with no short period. */
const pattern = (n: number, from = 0): Buffer => {
  const bytes = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) bytes[i] = (Math.imul(from + i + 1, 2654435761) >>> 24) & 0xff
  return bytes
}

/** Writes on a node:net socket; completes once Node handed the bytes to the kernel. */
const peerWrite = (peer: Net.Socket, bytes: Uint8Array): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    peer.write(bytes, () => resume(Effect.void))
  })

/** A node:net server; `next` waits (at most 5 s) for the i-th accepted socket. */
const rawPeers = (setup: (peer: Net.Socket) => void = () => {}) =>
  Effect.gen(function*() {
    const peers: Array<Net.Socket> = []
    const server = yield* rawServer((socket) => {
      socket.setNoDelay(true)
      socket.on("error", () => {})
      peers.push(socket)
      setup(socket)
    })
    const next = (i: number) =>
      Effect.gen(function*() {
        yield* waitUntil(() => peers.length > i, `peer ${i} connected`, 5000)
        const peer = peers[i]
        return peer ?? assert.fail("no peer")
      })
    return { server, peers, next }
  })

/** Samples this process's RSS every 20 ms (a sampling period, not a synchronisation) while `body` runs; returns its result and the peak. */
const peakRss = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    let peak = rss()
    const sampler = yield* Effect.forkChild(Effect.forever(Effect.andThen(Effect.sleep("20 millis"), Effect.sync(() => {
      peak = Math.max(peak, rss())
    }))))
    const result = yield* body
    yield* Fiber.interrupt(sampler)
    return { result, peak: Math.max(peak, rss()) }
  })

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`

describe("faults: hostile peers", () => {
  checkFdLeaks()

  describe("a peer that never reads", () => {
    it.live("16 senders of 16 MiB block, fail TimedOut at their deadline, and copy nothing", () =>
      withPool(TcpNode.layerWith({ slots: 32, bufferSize: 16 * KiB }), Effect.gen(function*() {
        const { server, next } = yield* rawPeers((peer) => peer.pause())
        const payload = Buffer.alloc(16 * MiB, 0x33)
        const sockets: Array<TcpSocket.TcpSocket> = []
        for (let i = 0; i < 16; i++) {
          sockets.push(yield* TcpClient.connect(server.address, T))
          yield* next(i)
        }
        const before = rss()
        const { peak, result } = yield* peakRss(Effect.forEach(sockets, (socket) =>
          Effect.gen(function*() {
            const start = Date.now()
            yield* failsWith(() => socket.send(payload, { timeout: "400 millis" }), "TimedOut", "send to a peer that never reads")
            return Date.now() - start
          }), { concurrency: "unbounded" }))
        const grown = peak - before
        console.log(
          `[faults/hostile] never-reading peers: 16 sends of 16 MiB (256 MiB if copied) timed out after ` +
            `${Math.min(...result)}..${Math.max(...result)} ms (deadline 400 ms); peak RSS +${mib(grown)}`
        )
        // How late they ended depends on the machine's load: logged above, not asserted.
        for (const elapsed of result) {
          assert.isAtLeast(elapsed, 399, "a send ended before its deadline")
        }
        // Node keeps a reference to the caller's bytes; copying them would cost 256 MiB.
        assert.isBelow(grown, 48 * MiB, `RSS grew ${mib(grown)} while 256 MiB were being sent`)
        // The outbound direction is unusable after a timed-out send; receiving still works.
        const first = sockets[0]
        assert.isDefined(first)
        if (first !== undefined) yield* failsWith(() => first.send(Buffer.from("x"), T), "ConnReset", "send after a timed-out send")
        yield* Effect.forEach(sockets, (s) => s.abort, { discard: true })
      })), 30_000)
  })

  describe("a peer that floods", () => {
    it.live("32 accepted and 32 connected sockets flooded from another process: RSS stays within the pool", () =>
      Effect.gen(function*() {
        const N = 32
        const bufferSize = 16 * KiB
        const poolBytes = 2 * N * bufferSize
        yield* withPool(TcpNode.layerWith({ slots: 2 * N, bufferSize }), Effect.gen(function*() {
          const listener = yield* TcpListener.listen("127.0.0.1:0", { backlog: 2 * N })
          const child = yield* Effect.acquireRelease(
            Effect.sync(() =>
              spawn(process.execPath, [floodChild, String(listener.port), String(N)], { stdio: ["pipe", "pipe", "inherit"] })
            ),
            (c) => Effect.sync(() => c.kill("SIGKILL"))
          )
          const lines: Array<string> = []
          child.stdout.on("data", (d: Buffer) => lines.push(...d.toString().split("\n").filter((l) => l.length > 0)))
          yield* waitUntil(() => lines.length > 0, "the flooder listens", 10_000)
          const { port } = JSON.parse(lines[0] ?? "{}") as { port: number }

          const rssBefore = rss()
          const { peak, result: sockets } = yield* peakRss(Effect.gen(function*() {
            const sockets: Array<TcpSocket.TcpSocket> = []
            for (let i = 0; i < N; i++) sockets.push(yield* listener.accept(T))
            for (let i = 0; i < N; i++) sockets.push(yield* TcpClient.connect(`127.0.0.1:${port}`, T))
            // The scenario: nobody here reads for 1.5 s while every socket is flooded (a slower
            // machine floods less; what is asserted holds for any amount).
            yield* Effect.sleep("1500 millis")
            return sockets
          }))
          child.stdin.write("stats\n")
          yield* waitUntil(() => lines.length > 1, "the flooder reports", 5000)
          const { flushed } = JSON.parse(lines[1] ?? "{}") as { flushed: number }
          const stats = yield* TcpStorage.stats
          const grown = peak - rssBefore
          console.log(
            `[faults/hostile] flood: ${2 * N} sockets, the flooder got ${mib(flushed)} into the kernel in 1.5 s; ` +
              `peak RSS +${mib(grown)} here; pool ${2 * N} x ${bufferSize / KiB} KiB = ${mib(poolBytes)} ` +
              `(slots created ${stats.slots})`
          )
          // What reached this process is bounded by the pool: the rest stays in kernel buffers
          // (and the flooder's windows closed). Allow V8's own noise on top of the pool.
          assert.isAtMost(stats.slots, 2 * N)
          assert.isBelow(grown, poolBytes + 24 * MiB, `RSS grew ${mib(grown)} under the flood`)
          // Every socket still works: the flood's bytes, exactly.
          for (const socket of sockets) {
            const bytes = yield* socket.recv(64 * KiB, T)
            assert.isTrue(bytes.every((b) => b === 0x5a))
          }
          yield* Effect.forEach(sockets, (s) => s.abort, { discard: true })
          child.stdin.end()
        }))
      }), 30_000)
  })

  describe("a peer that trickles one byte at a time", () => {
    it.live("recv, recvInto and recvv of sizes around a 1 KiB slot are exact", () =>
      withPool(TcpNode.layerWith({ slots: 4, bufferSize: 1024 }), Effect.gen(function*() {
        const total = 6000
        const data = pattern(total)
        const { server, next } = yield* rawPeers()
        const client = yield* TcpClient.connect(server.address, T)
        const peer = yield* next(0)
        // One byte per write; every fourth write, a turn of the event loop.
        const trickle = yield* Effect.forkChild(Effect.gen(function*() {
          for (let i = 0; i < total; i++) {
            yield* peerWrite(peer, data.subarray(i, i + 1))
            if (i % 4 === 0) yield* turns(1)
          }
        }))
        const parts: Array<Uint8Array> = []
        parts.push(yield* client.recv(1, T))
        parts.push(yield* client.recv(1023, T))
        parts.push(yield* client.recv(1024, T))
        parts.push(yield* client.recv(2500, T)) // larger than the slot
        const into = new Uint8Array(700)
        yield* client.recvInto(into, T)
        parts.push(into)
        const v = [new Uint8Array(1), new Uint8Array(500), new Uint8Array(0), new Uint8Array(251)]
        yield* client.recvv(v, T)
        parts.push(...v)
        yield* Fiber.join(trickle)
        assert.strictEqual(parts.reduce((n, p) => n + p.length, 0), total)
        assert.strictEqual(sha256(...parts), sha256(data))
        yield* failsWith(() => client.recv(1, { deadline: 0 }), "TimedOut", "nothing beyond what was sent")
      })), 30_000)
  })

  describe("a peer that resets", () => {
    it.live("mid-transfer: every byte returned is the stream's, then ConnReset; bytes already here stay readable", () =>
      withPool(TcpNode.layerWith({ slots: 4, bufferSize: 64 * KiB }), Effect.gen(function*() {
        const data = pattern(4 * MiB)
        const { server, next } = yield* rawPeers()
        const client = yield* TcpClient.connect(server.address, T)
        const peer = yield* next(0)
        // 48 KiB reach our slot before anything else happens.
        yield* peerWrite(peer, data.subarray(0, 48 * KiB))
        yield* waitUntil(() => peer.bytesWritten >= 48 * KiB, "48 KiB written")
        // They are in this end's kernel buffer, ahead of anything that follows (the reset too).
        yield* turns()
        // Then the peer keeps writing and resets after 1 MiB, while we read.
        const writer = yield* Effect.forkChild(Effect.gen(function*() {
          for (let at = 48 * KiB; at < MiB; at += 64 * KiB) yield* peerWrite(peer, data.subarray(at, at + 64 * KiB))
          peer.resetAndDestroy()
        }))
        let received = 0
        const chunks: Array<Uint8Array> = []
        let error: { readonly _tag: string; readonly errno: string; readonly syscall: string } | undefined
        for (let i = 0; i < 1000 && error === undefined; i++) {
          const exit = yield* Effect.exit(client.recv(8 * KiB, T))
          if (exit._tag === "Success") {
            chunks.push(exit.value)
            received += exit.value.length
          } else {
            error = yield* Effect.flip(exit)
          }
        }
        yield* Fiber.join(writer)
        console.log(`[faults/hostile] reset mid-transfer: ${mib(received)} of the 1 MiB sent were read, then ${error?._tag}`)
        assert.isDefined(error, "the reset must surface")
        assert.strictEqual(error?._tag, "ConnReset")
        assert.strictEqual(error?.errno, "ECONNRESET")
        assert.strictEqual(error?.syscall, "recv")
        assert.isAtLeast(received, 48 * KiB, "bytes that had arrived before the reset are readable")
        assert.strictEqual(sha256(...chunks), sha256(data.subarray(0, received)), "every byte returned is the stream's")
        yield* failsWith(() => client.recv(1, T), "ConnReset", "later receives")
      })), 30_000)

    it.live("while we send: the send fails ConnReset or BrokenPipe promptly, later calls stay documented", () =>
      withPool(TcpNode.layerWith({ slots: 4, bufferSize: 16 * KiB }), Effect.gen(function*() {
        const { server, next } = yield* rawPeers((peer) => peer.pause())
        const client = yield* TcpClient.connect(server.address, T)
        const peer = yield* next(0)
        const sending = yield* forkWaiting(client.send(Buffer.alloc(64 * MiB, 1), { deadline: -1 }), "64 MiB to a paused peer")
        const start = Date.now()
        peer.resetAndDestroy()
        // Bounded in polls, not time: a send that never notices fails here.
        const sent = yield* awaitDone(sending, "the blocked send noticed the reset")
        console.log(`[faults/hostile] a send blocked on a paused peer noticed its reset after ${Date.now() - start} ms`)
        yield* failsWith(() => sent, ["ConnReset", "BrokenPipe"], "the blocked send")
        yield* failsWith(() => client.send(Buffer.from("x"), T), ["ConnReset", "BrokenPipe"], "a later send")
        yield* failsWith(() => client.recv(1, T), ["ConnReset", "PeerClosed"], "a later recv")
        const closing = yield* Effect.exit(client.close(T))
        if (closing._tag === "Failure") {
          yield* failsWith(() => closing, "ConnReset", "close after the peer reset")
        }
      })), 30_000)

    /**
     * A client whose peer went away (FIN, then its descriptor closed) and
     * whose 4 MiB write then met the reset.
     */
    const brokenOnWrite = Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
      const server = yield* listener.accept(T)
      yield* server.abort
      // Whether the FIN is here yet or not, 4 MiB sent to a closed descriptor meet its reset.
      yield* turns()
      yield* failsWith(() => client.send(Buffer.alloc(4 * MiB), { deadline: -1 }), ["BrokenPipe", "ConnReset"], "the send")
      yield* turns()
      return client
    })

    it.live("close after the connection broke on a write: success or ConnReset, not SystemError(EPIPE)", () =>
      withPool(TcpNode.layerWith({ slots: 4, bufferSize: 16 * KiB }), Effect.gen(function*() {
        // The peer goes away (FIN, then its descriptor is closed); our 4 MiB
        // write meets its reset. libdill's tcp_close reports ECONNRESET once
        // the outbound direction broke; DESIGN.md names ConnReset for close.
        const client = yield* brokenOnWrite
        const closing = yield* Effect.exit(client.close(T))
        if (closing._tag === "Failure") {
          yield* failsWith(() => closing, "ConnReset", "close after the connection broke on a write")
        }
      })), 30_000)

    it.live("recv after the connection broke on a write: PeerClosed or ConnReset, not SystemError(EPIPE)", () =>
      withPool(TcpNode.layerWith({ slots: 4, bufferSize: 16 * KiB }), Effect.gen(function*() {
        const client = yield* brokenOnWrite
        yield* failsWith(() => client.recv(1, T), ["PeerClosed", "ConnReset"], "recv after the connection broke on a write")
      })), 30_000)
  })

  describe("half-closed peers", () => {
    it.live("the peer finishes first: we keep sending, get every byte it sent, PeerClosed only after the last", () =>
      withPool(TcpNode.layerWith({ slots: 4, bufferSize: 16 * KiB }), Effect.gen(function*() {
        const theirs = pattern(100 * KiB)
        const ours = pattern(MiB, 7)
        const { server, next } = yield* rawPeers()
        const client = yield* TcpClient.connect(server.address, T)
        const peer = yield* next(0)
        const everything = yield* Effect.forkChild(readAll(peer))
        peer.end(theirs)
        // Its FIN is on its way (after 100 KiB the kernel may not take at once), and it still reads:
        // our sends succeed.
        yield* turns()
        yield* client.send(ours, T)
        const a = yield* client.recv(60 * KiB, T)
        const tail = yield* failsPeerClosed(() => client.recv(50 * KiB, T), "recv spanning the end")
        assert.strictEqual(tail.bytes.length, 40 * KiB, "PeerClosed carries exactly the bytes that did arrive")
        assert.strictEqual(sha256(a, tail.bytes), sha256(theirs))
        const end = yield* failsPeerClosed(() => client.recv(1, T), "after the last byte")
        assert.strictEqual(end.bytes.length, 0)
        yield* client.done(T)
        const got = yield* Fiber.join(everything)
        assert.strictEqual(sha256(got), sha256(ours), "the peer read everything we sent after its FIN")
        yield* client.close(T)
      })), 30_000)

    it.live("we finish first: data the peer sends after our FIN arrives, then PeerClosed; close completes", () =>
      withPool(TcpNode.layerWith({ slots: 4, bufferSize: 16 * KiB }), Effect.gen(function*() {
        const ours = pattern(MiB, 3)
        const reply = pattern(300 * KiB, 11)
        const { server, next } = yield* rawPeers()
        const client = yield* TcpClient.connect(server.address, T)
        const peer = yield* next(0)
        const everything = yield* Effect.forkChild(readAll(peer))
        yield* client.send(ours, T)
        yield* client.done(T)
        yield* failsWith(() => client.send(Buffer.from("x"), T), "BrokenPipe", "send after done")
        // The peer answers only once it has our FIN.
        const got = yield* Fiber.join(everything)
        assert.strictEqual(sha256(got), sha256(ours))
        peer.end(reply)
        const back = yield* client.recv(reply.length, T)
        assert.strictEqual(sha256(back), sha256(reply))
        yield* failsWith(() => client.recv(1, T), "PeerClosed", "after the reply")
        yield* client.close(T)
      })), 30_000)

    it.live("both sides done at once with data in flight both ways (our sockets at both ends)", () =>
      withPool(TcpNode.layerWith({ slots: 4, bufferSize: 16 * KiB }), Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
        const server = yield* listener.accept(T)
        const one = (self: TcpSocket.TcpSocket, out: Buffer, expected: Buffer) =>
          Effect.gen(function*() {
            const [, received] = yield* Effect.all([
              Effect.andThen(self.send(out, T), self.done(T)),
              self.recv(expected.length, T)
            ], { concurrency: 2 })
            assert.strictEqual(sha256(received), sha256(expected))
            yield* failsWith(() => self.recv(1, T), "PeerClosed", "after the peer's last byte")
            yield* self.close(T)
          })
        const a = pattern(512 * KiB, 1)
        const b = pattern(512 * KiB, 2)
        yield* Effect.all([one(client, a, b), one(server, b, a)], { concurrency: 2 })
      })), 30_000)
  })
})
