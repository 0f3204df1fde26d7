import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Layer, Scope } from "effect"
import * as Net from "node:net"
import { TcpClient, TcpNode, TcpStorage } from "../src/index.ts"
import {
  checkFdLeaks,
  echoServer,
  expectPoolIdle,
  expectWaiting,
  pollUntil,
  rawServer,
  roundTrip,
  statsWhen,
  TestTcp,
  turns,
  withTcp
} from "./helpers.ts"

const decoder = new TextDecoder()
const MiB = 1024 * 1024

const TwoFail = TcpNode.layerWith({ slots: 2, bufferSize: 16 * 1024, onExhausted: "fail" })
const TwoWait = TcpNode.layerWith({ slots: 2, bufferSize: 16 * 1024 })
const OneFail = TcpNode.layerWith({ slots: 1, bufferSize: 16 * 1024, onExhausted: "fail" })

/** An echo server and two sockets connected to it: in a 2-slot pool, every slot is taken. */
const twoConnected = Effect.gen(function*() {
  const server = yield* echoServer()
  const a = yield* TcpClient.connect(server.address, { timeout: "2 seconds" })
  const b = yield* TcpClient.connect(server.address, { timeout: "2 seconds" })
  return { server, a, b }
})

/** Building a storage layer with these settings dies (a defect: static configuration). */
const expectLayerInvalid = (options: TcpStorage.Options, what: string) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(Effect.provide(TcpStorage.stats, TcpStorage.layer(options)))
    assert.isTrue(Exit.isFailure(exit), `${what}: the layer was built`)
    if (Exit.isFailure(exit)) {
      assert.isFalse(Cause.hasDies(exit.cause), `${what}: expected InvalidArgument, got a defect: ${String(exit.cause)}`)
      const error = Cause.findErrorOption(exit.cause)
      assert.isTrue(error._tag === "Some" && error.value._tag === "InvalidArgument", `${what}: ${String(exit.cause)}`)
    }
  })

describe("TcpStorage", () => {
  checkFdLeaks()

  it.live("stats start at zero", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* TcpStorage.stats, { slots: 0, inUse: 0, waiting: 0, highWater: 0 })
      const storage = yield* TcpStorage.TcpStorage
      assert.strictEqual(storage.bufferSize, 16 * 1024)
      yield* expectPoolIdle
    }).pipe(Effect.provide(TestTcp)))

  it.live("the default layer has the documented defaults", () =>
    Effect.gen(function*() {
      const storage = yield* TcpStorage.TcpStorage
      assert.strictEqual(storage.bufferSize, 64 * 1024)
      assert.deepStrictEqual(yield* TcpStorage.stats, { slots: 0, inUse: 0, waiting: 0, highWater: 0 })
    }).pipe(Effect.provide(TcpNode.layer)))

  it.live("slots are created on demand and reused", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoServer()
      for (let i = 0; i < 3; i++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const socket = yield* TcpClient.connect(server.address, { timeout: "2 seconds" })
          const live = yield* TcpStorage.stats
          assert.strictEqual(live.inUse, 1, `socket ${i}`)
          yield* roundTrip(socket, `socket ${i}`)
          yield* socket.close({ timeout: "2 seconds" })
        }))
        const after = yield* statsWhen((s) => s.inUse === 0)
        assert.deepStrictEqual(after, { slots: 1, inUse: 0, waiting: 0, highWater: 1 }, `after socket ${i}`)
      }
    })))

  it.live("concurrent sockets take distinct slots; highWater remembers the most", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoServer()
      yield* Effect.scoped(Effect.gen(function*() {
        const sockets = yield* Effect.all(
          [0, 1, 2].map(() => TcpClient.connect(server.address, { timeout: "2 seconds" })),
          { concurrency: 3 }
        )
        const live = yield* TcpStorage.stats
        assert.strictEqual(live.inUse, 3)
        assert.strictEqual(live.slots, 3)
        assert.strictEqual(live.highWater, 3)
        for (const [i, socket] of sockets.entries()) yield* roundTrip(socket, `concurrent ${i}`)
      }))
      const after = yield* statsWhen((s) => s.inUse === 0)
      assert.deepStrictEqual(after, { slots: 3, inUse: 0, waiting: 0, highWater: 3 })
      // A later single socket reuses a slot rather than making a fourth.
      yield* Effect.scoped(Effect.gen(function*() {
        const socket = yield* TcpClient.connect(server.address, { timeout: "2 seconds" })
        yield* roundTrip(socket, "again")
      }))
      const last = yield* statsWhen((s) => s.inUse === 0)
      assert.strictEqual(last.slots, 3)
      assert.strictEqual(last.highWater, 3)
    })))

  describe("exhaustion", () => {
    it.live("onExhausted \"fail\": a third concurrent connect fails OutOfMemory at once", () =>
      withTcp(Effect.gen(function*() {
        const { server, a } = yield* twoConnected
        // A generous timeout: waiting for a slot would end in TimedOut, not OutOfMemory.
        const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(server.address, { timeout: "10 seconds" })))
        assert.strictEqual(error._tag, "OutOfMemory")
        assert.strictEqual(error.errno, "ENOMEM")
        assert.strictEqual(error.syscall, "connect")
        assert.strictEqual(error.address, server.address)
        assert.isTrue(error.message.length > 0)
        const stats = yield* TcpStorage.stats
        assert.deepStrictEqual(stats, { slots: 2, inUse: 2, waiting: 0, highWater: 2 })
        // acquire fails the same way.
        const acquireError = yield* Effect.flip(Effect.scoped(TcpStorage.acquire({ timeout: "10 seconds" })))
        assert.strictEqual(acquireError._tag, "OutOfMemory")
        // Once one closes, a slot is available again.
        yield* a.close({ timeout: "2 seconds" })
        yield* statsWhen((s) => s.inUse === 1)
        yield* Effect.scoped(Effect.gen(function*() {
          const c = yield* TcpClient.connect(server.address, { timeout: "2 seconds" })
          yield* roundTrip(c, "third")
        }))
        assert.strictEqual((yield* TcpStorage.stats).slots, 2)
      }), TwoFail))

    it.live("onExhausted \"wait\": a third connect waits and completes when a slot frees", () =>
      withTcp(Effect.gen(function*() {
        const { server, a, b } = yield* twoConnected
        const third = yield* Effect.forkChild(TcpClient.connect(server.address, { timeout: "10 seconds" }))
        const waiting = yield* statsWhen((s) => s.waiting === 1)
        assert.strictEqual(waiting.waiting, 1)
        assert.strictEqual(waiting.inUse, 2)
        yield* expectWaiting(third, "a connect while both slots are held")
        yield* a.close({ timeout: "2 seconds" })
        const c = yield* Fiber.join(third)
        yield* roundTrip(c, "waited")
        yield* roundTrip(b, "b still works")
        const stats = yield* TcpStorage.stats
        assert.deepStrictEqual(stats, { slots: 2, inUse: 2, waiting: 0, highWater: 2 })
        yield* Effect.all([b.close({ timeout: "2 seconds" }), c.close({ timeout: "2 seconds" })], {
          concurrency: 2
        })
      }), TwoWait))

    it.live("onExhausted \"wait\": a waiting connect fails TimedOut at its deadline", () =>
      withTcp(Effect.gen(function*() {
        const { server } = yield* twoConnected
        const start = Date.now()
        const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(server.address, { timeout: "300 millis" })))
        assert.strictEqual(error._tag, "TimedOut")
        assert.strictEqual(error.errno, "ETIMEDOUT")
        assert.strictEqual(error.syscall, "connect")
        assert.isAtLeast(Date.now() - start, 250)
        assert.deepStrictEqual(yield* TcpStorage.stats, { slots: 2, inUse: 2, waiting: 0, highWater: 2 })
        // acquire waits within its deadline too.
        const start2 = Date.now()
        const acquireError = yield* Effect.flip(Effect.scoped(TcpStorage.acquire({ timeout: "300 millis" })))
        assert.strictEqual(acquireError._tag, "TimedOut")
        assert.isAtLeast(Date.now() - start2, 250)
        assert.strictEqual((yield* TcpStorage.stats).waiting, 0)
      }), TwoWait))

    it.live("deadline 0 with an exhausted \"wait\" pool fails TimedOut at once", () =>
      withTcp(Effect.gen(function*() {
        const { server } = yield* twoConnected
        const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(server.address, { deadline: 0 })))
        assert.strictEqual(error._tag, "TimedOut")
        assert.strictEqual(error.syscall, "connect")
        const acquireError = yield* Effect.flip(Effect.scoped(TcpStorage.acquire({ deadline: 0 })))
        assert.strictEqual(acquireError._tag, "TimedOut")
        assert.deepStrictEqual(yield* TcpStorage.stats, { slots: 2, inUse: 2, waiting: 0, highWater: 2 })
      }), TwoWait))

    it.live("interrupting a waiting connect leaves waiting back at 0", () =>
      withTcp(Effect.gen(function*() {
        const { server, a } = yield* twoConnected
        const first = yield* Effect.forkChild(Effect.scoped(TcpClient.connect(server.address, { deadline: -1 })))
        const second = yield* Effect.forkChild(Effect.scoped(TcpClient.connect(server.address, { deadline: -1 })))
        assert.strictEqual((yield* statsWhen((s) => s.waiting === 2)).waiting, 2)
        yield* Fiber.interrupt(first)
        assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(first)), "first connect ended interrupted")
        assert.strictEqual((yield* TcpStorage.stats).waiting, 1)
        yield* Fiber.interrupt(second)
        assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(second)), "second connect ended interrupted")
        assert.deepStrictEqual(yield* TcpStorage.stats, { slots: 2, inUse: 2, waiting: 0, highWater: 2 })
        // The freed slot goes to the next caller, not to an interrupted waiter.
        yield* a.close({ timeout: "2 seconds" })
        assert.strictEqual((yield* statsWhen((s) => s.inUse === 1)).inUse, 1)
        yield* Effect.scoped(Effect.gen(function*() {
          const c = yield* TcpClient.connect(server.address, { timeout: "2 seconds" })
          yield* roundTrip(c, "after interrupt")
        }))
      }), TwoWait))

    it.live("interrupting a caller waiting in TcpStorage.acquire leaves waiting back at 0", () =>
      withTcp(Effect.gen(function*() {
        const { a } = yield* twoConnected
        const acquirer = yield* Effect.forkChild(Effect.scoped(TcpStorage.acquire()))
        assert.strictEqual((yield* statsWhen((s) => s.waiting === 1)).waiting, 1)
        const interrupting = yield* Effect.forkChild(Fiber.interrupt(acquirer))
        // Give the interruption time to take effect (polled, bounded).
        yield* pollUntil(() => acquirer.pollUnsafe() !== undefined)
        const exit = acquirer.pollUnsafe()
        const waitingAfter = (yield* TcpStorage.stats).waiting
        // If the interruption did not take effect, free a slot so the stuck
        // caller (and this test) can finish, then report.
        if (exit === undefined) yield* a.close({ timeout: "2 seconds" })
        yield* Fiber.join(interrupting)
        assert.isDefined(exit, "acquire was still waiting long after being interrupted")
        assert.isTrue(exit !== undefined && Exit.hasInterrupts(exit), "acquire ended interrupted")
        assert.strictEqual(waitingAfter, 0)
        assert.deepStrictEqual(yield* TcpStorage.stats, { slots: 2, inUse: 2, waiting: 0, highWater: 2 })
      }), TwoWait))
  })

  describe("acquire", () => {
    it.live("holds a slot (inUse 1) until its scope closes", () =>
      Effect.gen(function*() {
        yield* Effect.scoped(Effect.gen(function*() {
          const slot = yield* TcpStorage.acquire()
          assert.strictEqual(slot.bufferSize, 16 * 1024)
          assert.deepStrictEqual(yield* TcpStorage.stats, { slots: 1, inUse: 1, waiting: 0, highWater: 1 })
        }))
        assert.deepStrictEqual(yield* TcpStorage.stats, { slots: 1, inUse: 0, waiting: 0, highWater: 1 })
        // Reused, not recreated.
        const id = yield* Effect.scoped(Effect.map(TcpStorage.acquire(), (slot) => slot.id))
        const again = yield* Effect.scoped(Effect.map(TcpStorage.acquire(), (slot) => slot.id))
        assert.strictEqual(again, id)
        assert.strictEqual((yield* TcpStorage.stats).slots, 1)
        yield* expectPoolIdle
      }).pipe(Effect.provide(TestTcp)))

    it.live("rejects invalid deadlines with InvalidArgument", () =>
      Effect.gen(function*() {
        for (const options of [{ deadline: Number.NaN }, { deadline: -2 }, { timeout: "nonsense" as never }]) {
          const error = yield* Effect.flip(Effect.scoped(TcpStorage.acquire(options)))
          assert.strictEqual(error._tag, "InvalidArgument")
          assert.strictEqual(error.errno, "EINVAL")
        }
        yield* expectPoolIdle
      }).pipe(Effect.provide(TestTcp)))

    it.live("a slot is reused only after its socket is fully closed", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const socketScope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(socketScope, Exit.void))
        const socket = yield* Effect.scoped(Effect.gen(function*() {
          const slot = yield* TcpStorage.acquire()
          return yield* TcpClient.connect(server.address, { storage: slot, timeout: "2 seconds" }).pipe(
            Scope.provide(socketScope)
          )
        }))
        // The acquiring scope closed, the socket lives on in its slot.
        assert.deepStrictEqual(yield* TcpStorage.stats, { slots: 1, inUse: 1, waiting: 0, highWater: 1 })
        const error = yield* Effect.flip(Effect.scoped(TcpStorage.acquire()))
        assert.strictEqual(error._tag, "OutOfMemory", "the only slot is not handed out while its socket lives")
        yield* roundTrip(socket, "still here")
        yield* socket.close({ timeout: "2 seconds" })
        const after = yield* statsWhen((s) => s.inUse === 0)
        assert.deepStrictEqual(after, { slots: 1, inUse: 0, waiting: 0, highWater: 1 })
        // Now the slot serves a new holder.
        yield* Effect.scoped(TcpStorage.acquire())
      }), OneFail))

    it.live("a slot whose socket closed stays held until the acquiring scope closes", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        yield* Effect.scoped(Effect.gen(function*() {
          const slot = yield* TcpStorage.acquire()
          const socket = yield* TcpClient.connect(server.address, { storage: slot, timeout: "2 seconds" })
          yield* roundTrip(socket, "x")
          yield* socket.close({ timeout: "2 seconds" })
          // Give any asynchronous release (Node closing the handle) a chance; the scope still holds the slot.
          yield* turns()
          assert.strictEqual((yield* TcpStorage.stats).inUse, 1)
          const error = yield* Effect.flip(Effect.scoped(TcpStorage.acquire()))
          assert.strictEqual(error._tag, "OutOfMemory")
        }))
        assert.strictEqual((yield* statsWhen((s) => s.inUse === 0)).inUse, 0)
      }), OneFail))
  })

  describe("layer settings", () => {
    it.live("invalid settings fail the layer build with InvalidArgument (see LayerOptions.test.ts)", () =>
      Effect.gen(function*() {
        yield* expectLayerInvalid({ slots: 0 }, "slots 0")
        yield* expectLayerInvalid({ slots: -1 }, "slots -1")
        yield* expectLayerInvalid({ slots: 1.5 }, "slots 1.5")
        yield* expectLayerInvalid({ slots: Number.NaN }, "slots NaN")
        yield* expectLayerInvalid({ bufferSize: 10 }, "bufferSize 10")
        yield* expectLayerInvalid({ bufferSize: 1023 }, "bufferSize 1023")
        yield* expectLayerInvalid({ bufferSize: 4096.5 }, "bufferSize 4096.5")
        yield* expectLayerInvalid({ onExhausted: "sometimes" as never }, "onExhausted sometimes")
        const viaNode = yield* Effect.flip(Effect.provide(TcpStorage.stats, TcpNode.layerWith({ slots: 0 })))
        assert.strictEqual(viaNode._tag, "InvalidArgument", "TcpNode.layerWith too")
      }))

    it.live("the smallest valid settings build", () =>
      Effect.gen(function*() {
        const stats = yield* Effect.provide(TcpStorage.stats, TcpStorage.layer({ slots: 1, bufferSize: 1024 }))
        assert.deepStrictEqual(stats, { slots: 0, inUse: 0, waiting: 0, highWater: 0 })
        const size = yield* Effect.provide(
          Effect.scoped(Effect.map(TcpStorage.acquire(), (slot) => slot.bufferSize)),
          Layer.fresh(TcpStorage.layer({ slots: 1, bufferSize: 1024 }))
        )
        assert.strictEqual(size, 1024)
      }))
  })

  describe("memory bounded by the pool", () => {
    it.live("a peer flooding 32 MiB at a socket that never receives", () =>
      Effect.gen(function*() {
        const chunk = Buffer.alloc(MiB, 0x61)
        const peers: Array<Net.Socket> = []
        const server = yield* rawServer((socket) => {
          socket.on("error", () => {})
          peers.push(socket)
          // Ignore backpressure: 32 writes of the same 1 MiB buffer (Node keeps
          // references, it copies nothing), so the peer holds what the kernel
          // does not take in its writable queue.
          for (let i = 0; i < 32; i++) socket.write(chunk)
        })
        yield* Effect.scoped(Effect.gen(function*() {
          const rssBefore = process.memoryUsage().rss
          const socket = yield* TcpClient.connect(server.address, { timeout: "2 seconds" })
          // Poll (at most 100 times, 50 ms apart) until the peer's queue stops
          // shrinking: the kernel's buffers are full and its writes are blocked.
          let last = -1
          let stable = 0
          for (let i = 0; i < 100 && stable < 5; i++) {
            yield* Effect.sleep("50 millis")
            const peer = peers[0]
            const now = peer === undefined ? -1 : peer.writableLength
            stable = now > 0 && now === last ? stable + 1 : 0
            last = now
          }
          const peer = peers[0]
          assert.isDefined(peer)
          const queued = peer?.writableLength ?? 0
          const rssAfter = process.memoryUsage().rss
          const grown = rssAfter - rssBefore
          console.log(
            `flood: peer still queues ${(queued / MiB).toFixed(1)} MiB, RSS grew ${(grown / MiB).toFixed(1)} MiB`
          )
          assert.isAtLeast(stable, 5, `the peer's writes never stopped (writableLength ${queued})`)
          // At most the kernel's socket buffers and the 16 KiB slot left the
          // peer's queue: most of the 32 MiB is still waiting there.
          assert.isAbove(queued, 16 * MiB, `the peer's writes are blocked (writableLength ${queued})`)
          assert.isBelow(grown, 24 * MiB, `RSS grew by ${(grown / MiB).toFixed(1)} MiB`)
          // The socket is still usable: the first bytes are there.
          const first = yield* socket.recv(4, { timeout: "2 seconds" })
          assert.strictEqual(decoder.decode(first), "aaaa")
          yield* socket.abort
        }))
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(TestTcp)), 20_000)
  })
})
