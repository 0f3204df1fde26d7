/**
 * TcpListener: listen, accept (order, deadlines, interruption, storage),
 * close, the `pending` bound, data through accepted sockets, scope release,
 * descriptor hygiene over many cycles, and a real EMFILE in a child process
 * whose descriptor limit is lowered with prlimit.
 *
 * Real sockets on loopback only; peers are plain node:net sockets where the
 * test needs a client that nobody here wrote.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import { NetAddress } from "effect/net"
import { spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { closeSync, existsSync, fstatSync, openSync, readFileSync } from "node:fs"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"
import { Deadline, TcpClient, TcpError, TcpListener, TcpNode, TcpStorage } from "../src/index.ts"
import type { TcpSocket } from "../src/index.ts"
import {
  checkFdLeaks,
  closedPort,
  eventually,
  expectPoolIdle,
  fdsBackTo,
  forkWaiting,
  openFds,
  rawServer,
  runProcess,
  statsWhen,
  turns,
  withTcp
} from "./helpers.ts"

// ---------------------------------------------------------------- fixtures

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const text = (bytes: Uint8Array) => decoder.decode(bytes)
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
const T = { timeout: "3 seconds" } as const

/** Polls `condition` (every 10 ms, about `ms` on an idle machine: bounded in count); fails the test if it never holds. */
const waitUntil = (condition: () => boolean, what: string, ms = 5000): Effect.Effect<void> =>
  eventually(condition, what, Math.ceil(ms / 10))

/** A node:net client that records what happens to it. */
interface Peer {
  readonly socket: Net.Socket
  /** Total bytes received so far. */
  received(): number
  /** Waits (bounded) for the next `n` bytes and returns them. */
  take(n: number, ms?: number): Effect.Effect<Buffer>
  /** The peer's FIN arrived. */
  readonly ended: () => boolean
  /** The socket is gone (FIN with allowHalfOpen false, reset, or destroy). */
  readonly closed: () => boolean
  /** FIN, reset or close: the server side let go. */
  readonly hungUp: () => boolean
  readonly error: () => Error | undefined
}

/** Connects a node:net client (destroyed with the scope). */
const peer = (
  port: number,
  options: { readonly host?: string; readonly allowHalfOpen?: boolean } = {}
): Effect.Effect<Peer, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Peer, Error>((resume) => {
      const socket = Net.connect({
        port,
        host: options.host ?? "127.0.0.1",
        allowHalfOpen: options.allowHalfOpen ?? false
      })
      const chunks: Array<Buffer> = []
      let total = 0
      let consumed = 0
      let ended = false
      let closed = false
      let error: Error | undefined
      socket.on("data", (chunk: Buffer) => {
        chunks.push(chunk)
        total += chunk.length
      })
      socket.on("end", () => {
        ended = true
      })
      socket.on("close", () => {
        closed = true
      })
      socket.on("error", (e) => {
        error = e
      })
      const take = (n: number, ms = 5000) =>
        Effect.gen(function*() {
          yield* waitUntil(() => total - consumed >= n, `${n} bytes arrived (have ${total - consumed})`, ms)
          const all = Buffer.concat(chunks)
          chunks.length = 0
          chunks.push(all)
          const out = Buffer.from(all.subarray(consumed, consumed + n))
          consumed += n
          return out
        })
      const connected: Peer = {
        socket,
        received: () => total,
        take,
        ended: () => ended,
        closed: () => closed,
        hungUp: () => ended || closed || error !== undefined,
        error: () => error
      }
      socket.once("connect", () => resume(Effect.succeed(connected)))
      socket.once("error", (e) => resume(Effect.fail(e)))
    }),
    (p) => Effect.sync(() => p.socket.destroy())
  )

/** Writes through a node:net socket, waiting until Node flushed it. */
const write = (p: Peer, bytes: Uint8Array): Effect.Effect<void, Error> =>
  Effect.callback<void, Error>((resume) => {
    p.socket.write(bytes, (e) => resume(e ? Effect.fail(e) : Effect.void))
  })

/** Loopback IPv6 present? (read synchronously so the test can be skipped at registration) */
const ipv6Loopback: string | undefined = (() => {
  try {
    const table = readFileSync("/proc/net/if_inet6", "utf8")
    return table.split("\n").some((row) => row.startsWith("00000000000000000000000000000001"))
      ? undefined
      : "no ::1 in /proc/net/if_inet6"
  } catch (e) {
    return `cannot read /proc/net/if_inet6: ${String(e)}`
  }
})()
if (ipv6Loopback !== undefined) console.log(`[TcpListener] skipping IPv6 listen test: ${ipv6Loopback}`)

const prlimit: string | undefined = (() => {
  const probe = spawnSync("prlimit", ["--version"], { stdio: "ignore" })
  return probe.error !== undefined || probe.status !== 0
    ? `prlimit (util-linux) not available: ${String(probe.error ?? probe.status)}`
    : undefined
})()
if (prlimit !== undefined) console.log(`[TcpListener] skipping EMFILE test: ${prlimit}`)

const emfileChild = fileURLToPath(new URL("./fixtures/emfile-child.ts", import.meta.url))

/** The accepted socket echoes exactly `total` bytes back in `chunk`-sized exact receives. */
const echo = (socket: TcpSocket.TcpSocket, total: number, chunk: number) =>
  Effect.gen(function*() {
    const hash = createHash("sha256")
    for (let done = 0; done < total; done += chunk) {
      const bytes = yield* socket.recv(Math.min(chunk, total - done), T)
      hash.update(bytes)
      yield* socket.send(bytes, T)
    }
    return hash.digest("hex")
  })

/**
 * Takes a slot in a scope of its own (closed with the test's at the latest)
 * and returns that scope: closing it gives the slot back.
 */
const holdSlot = Effect.gen(function*() {
  const holder = yield* Scope.make()
  yield* Effect.addFinalizer(() => Scope.close(holder, Exit.void))
  yield* TcpStorage.acquire().pipe(Scope.provide(holder))
  return holder
})

const assertTimedOut = (error: TcpError.AcceptError) => {
  assert.strictEqual(error._tag, "TimedOut")
  assert.strictEqual(error.errno, "ETIMEDOUT")
  assert.strictEqual(error.syscall, "accept")
}

// ------------------------------------------------------------------- tests

describe("TcpListener", () => {
  checkFdLeaks()

  describe("listen", () => {
    it.live("127.0.0.1:0 picks a free port and reports the bound address", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        assert.isTrue(TcpListener.isTcpListener(listener))
        assert.isAbove(listener.port, 0)
        assert.isAtMost(listener.port, 65535)
        assert.strictEqual(listener.address._tag, "InetAddressV4")
        assert.strictEqual(listener.address.port, listener.port)
        assert.strictEqual(NetAddress.formatInet(listener.address), `127.0.0.1:${listener.port}`)
        // It really listens there: a plain client gets through and is accepted.
        const client = yield* peer(listener.port)
        const socket = yield* listener.accept(T)
        assert.strictEqual(socket.localAddress?.port, listener.port)
        assert.strictEqual(socket.remoteAddress?.port, client.socket.localPort)
        const local = socket.localAddress
        assert.strictEqual(local === undefined ? "" : NetAddress.formatHost(local), "127.0.0.1")
      })))

    it.live.skipIf(ipv6Loopback !== undefined)("[::1]:0 listens on IPv6 loopback", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("[::1]:0")
        assert.isAbove(listener.port, 0)
        assert.strictEqual(listener.address._tag, "InetAddressV6")
        assert.strictEqual(NetAddress.formatInet(listener.address), `[::1]:${listener.port}`)
        const client = yield* TcpClient.connect(`[::1]:${listener.port}`, T)
        const socket = yield* listener.accept(T)
        const remote = socket.remoteAddress
        assert.strictEqual(remote === undefined ? "" : NetAddress.formatHost(remote), "::1")
        yield* client.send(encoder.encode("v6"), T)
        assert.strictEqual(text(yield* socket.recv(2, T)), "v6")
      })))

    it.live("{ host, port } and an InetAddress are accepted as addresses", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen({ host: "127.0.0.1", port: 0 })
        assert.isAbove(listener.port, 0)
        assert.strictEqual(NetAddress.formatInet(listener.address), `127.0.0.1:${listener.port}`)
        const inet = NetAddress.inetAddressFromIpString("127.0.0.1", 0)
        assert.strictEqual(inet._tag, "Success")
        if (inet._tag === "Success") {
          const second = yield* TcpListener.listen(inet.success)
          assert.isAbove(second.port, 0)
          assert.notStrictEqual(second.port, listener.port)
        }
        // an explicit free port is honoured
        const port = yield* closedPort
        const third = yield* TcpListener.listen({ host: "127.0.0.1", port })
        assert.strictEqual(third.port, port)
      })))

    it.live("a port taken by a node:net server is AddrInUse", () =>
      withTcp(Effect.gen(function*() {
        const taken = yield* rawServer(() => {})
        const error = yield* Effect.flip(TcpListener.listen(`127.0.0.1:${taken.port}`))
        assert.strictEqual(error._tag, "AddrInUse")
        assert.strictEqual(error.errno, "EADDRINUSE")
        assert.strictEqual(error.syscall, "listen")
        assert.include(error.address ?? "", String(taken.port))
        // and one taken by another TcpListener too
        const first = yield* TcpListener.listen("127.0.0.1:0")
        const again = yield* Effect.flip(TcpListener.listen({ host: "127.0.0.1", port: first.port }))
        assert.strictEqual(again._tag, "AddrInUse")
      })))

    it.live("bad addresses are InvalidArgument", () =>
      withTcp(Effect.gen(function*() {
        const bad: ReadonlyArray<unknown> = [
          "127.0.0.1",
          "127.0.0.1:",
          "127.0.0.1:65536",
          "127.0.0.1:-1",
          "127.0.0.1:1.5",
          "127.0.0.1:abc",
          "",
          ":",
          "[::1",
          "[::1]",
          "::1:0",
          { host: "127.0.0.1", port: -1 },
          { host: "127.0.0.1", port: 1.5 },
          { host: "127.0.0.1", port: 70000 },
          { host: "127.0.0.1" },
          42,
          null,
          undefined
        ]
        for (const address of bad) {
          const error = yield* Effect.flip(TcpListener.listen(address as TcpClient.TcpAddress))
          assert.strictEqual(error._tag, "InvalidArgument", `listen(${JSON.stringify(address)})`)
          assert.strictEqual(error.errno, "EINVAL")
          assert.strictEqual(error.syscall, "listen")
        }
      })))

    it.live("an address that is not this host's is AddrNotAvail (bind fails locally, nothing is sent)", () =>
      withTcp(Effect.gen(function*() {
        const error = yield* Effect.flip(TcpListener.listen("192.0.2.1:0"))
        assert.strictEqual(error._tag, "AddrNotAvail")
        assert.strictEqual(error.errno, "EADDRNOTAVAIL")
      })))

    it.live("bad backlog and pending are InvalidArgument", () =>
      withTcp(Effect.gen(function*() {
        const bad: ReadonlyArray<TcpListener.ListenOptions> = [
          { backlog: 0 },
          { backlog: -1 },
          { backlog: 1.5 },
          { backlog: Number.NaN },
          { backlog: Number.POSITIVE_INFINITY },
          { backlog: "8" as unknown as number },
          { pending: -1 },
          { pending: 1.5 },
          { pending: Number.NaN },
          { pending: Number.POSITIVE_INFINITY },
          { backlog: 4, pending: -1 }
        ]
        for (const options of bad) {
          const error = yield* Effect.flip(TcpListener.listen("127.0.0.1:0", options))
          assert.strictEqual(error._tag, "InvalidArgument", `listen options ${String(JSON.stringify(options))}`)
        }
        // the valid extremes
        yield* TcpListener.listen("127.0.0.1:0", { backlog: 1 })
        yield* TcpListener.listen("127.0.0.1:0", { backlog: 1, pending: 0 })
      })))

    it.live("closing the listener's scope stops listening: a later connect is refused", () =>
      withTcp(Effect.gen(function*() {
        const port = yield* Effect.scoped(Effect.map(TcpListener.listen("127.0.0.1:0"), (listener) => listener.port))
        const error = yield* Effect.flip(TcpClient.connect(`127.0.0.1:${port}`, T))
        assert.strictEqual(error._tag, "ConnRefused")
      })))

    it.live("closing the listener's scope closes connections it had not handed out", () =>
      withTcp(Effect.gen(function*() {
        const outer = yield* Effect.scope
        const client = yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* TcpListener.listen("127.0.0.1:0")
          const client = yield* peer(listener.port).pipe(Scope.provide(outer))
          // Node takes the completed connection in its next I/O turns (if it has not, closing the
          // listening descriptor drops it from the kernel's queue: the client hangs up all the same).
          yield* turns()
          return client
        }))
        yield* waitUntil(client.hungUp, "the queued connection's client saw EOF or a reset")
      })))
  })

  describe("accept", () => {
    it.live("returns sockets in connection order", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const clients: Array<Peer> = []
        for (let i = 0; i < 5; i++) {
          const client = yield* peer(listener.port)
          yield* write(client, new Uint8Array([i]))
          clients.push(client)
        }
        for (let i = 0; i < 5; i++) {
          const socket = yield* listener.accept(T)
          assert.strictEqual(socket.remoteAddress?.port, clients[i]?.socket.localPort, `accept #${i}`)
          const [tag] = yield* socket.recv(1, T)
          assert.strictEqual(tag, i)
        }
      })))

    it.live("deadline 0 fails TimedOut when nothing is queued", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        assertTimedOut(yield* Effect.flip(listener.accept({ deadline: 0 })))
        assertTimedOut(yield* Effect.flip(listener.accept({ deadline: Deadline.immediate })))
        assertTimedOut(yield* Effect.flip(listener.accept({ timeout: 0 })))
      })))

    it.live("deadline 0 succeeds when a connection is already queued", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const client = yield* peer(listener.port)
        yield* write(client, encoder.encode("queued"))
        // The handshake is complete (client saw 'connect'); Node takes it from the kernel in a
        // later I/O turn. Until then deadline 0 must miss with TimedOut; then it must succeed.
        let socket: TcpSocket.TcpSocket | undefined
        yield* eventually(
          listener.accept({ deadline: 0 }).pipe(
            Effect.map((accepted) => {
              socket = accepted
              return true
            }),
            Effect.catchTag("TimedOut", (error) => Effect.sync(() => (assertTimedOut(error), false)))
          ),
          "accept(deadline 0) takes the queued connection"
        )
        if (socket === undefined) return assert.fail("accept(deadline 0) took nothing")
        assert.strictEqual(text(yield* socket.recv(6, T)), "queued")
        yield* socket.send(encoder.encode("ok"), T)
        assert.strictEqual((yield* client.take(2)).toString(), "ok")
        // and the queue is empty again
        assertTimedOut(yield* Effect.flip(listener.accept({ deadline: 0 })))
      })))

    it.live("a past deadline fails TimedOut at once; a timeout waits for it first", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const past = (yield* Deadline.now) - 1000
        assertTimedOut(yield* Effect.flip(listener.accept({ deadline: past })))
        assertTimedOut(yield* Effect.flip(listener.accept({ deadline: 1 })))
        const start = Date.now()
        assertTimedOut(yield* Effect.flip(listener.accept({ timeout: "300 millis" })))
        assert.isAtLeast(Date.now() - start, 250)
        // the earlier of deadline and timeout wins
        assertTimedOut(yield* Effect.flip(listener.accept({ deadline: past, timeout: "10 seconds" })))
      })))

    it.live("bad deadlines, options and storage are InvalidArgument", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const bad: ReadonlyArray<TcpListener.AcceptOptions> = [
          { deadline: -2 },
          { deadline: Number.NaN },
          { deadline: Number.POSITIVE_INFINITY },
          { timeout: -5 },
          { noDelay: "yes" as unknown as boolean },
          { storage: { id: 0, bufferSize: 16384 } }
        ]
        for (const options of bad) {
          const error = yield* Effect.flip(listener.accept(options))
          assert.strictEqual(error._tag, "InvalidArgument", `accept(${String(JSON.stringify(options))})`)
        }
      })))

    it.live("deadline -1 waits until a client connects later", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const waiting = yield* forkWaiting(listener.accept({ deadline: -1 }), "accept with nobody connecting")
        const client = yield* peer(listener.port)
        const socket = yield* Fiber.join(waiting)
        yield* write(client, encoder.encode("late"))
        assert.strictEqual(text(yield* socket.recv(4, T)), "late")
      })))

    it.live("an interrupted accept loses nothing: the next accept gets the connection", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        for (let i = 0; i < 10; i++) {
          const waiting = yield* forkWaiting(listener.accept(), "accept with nobody connecting")
          yield* Fiber.interrupt(waiting)
          const exit = yield* Fiber.await(waiting)
          assert.isTrue(Exit.isFailure(exit) && Exit.hasInterrupts(exit))
        }
        const stats = yield* statsWhen((s) => s.inUse === 0 && s.waiting === 0)
        assert.strictEqual(stats.inUse, 0, "an interrupted accept kept its slot")
        assert.strictEqual(stats.waiting, 0)
        const client = yield* peer(listener.port)
        yield* write(client, encoder.encode("x"))
        const socket = yield* listener.accept(T)
        assert.strictEqual(text(yield* socket.recv(1, T)), "x")
        yield* socket.send(encoder.encode("y"), T)
        assert.strictEqual((yield* client.take(1)).toString(), "y")
      })))

    it.live("accept interrupted while a connection arrives: every connection is accepted exactly once", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const rounds = 30
        const sockets: Array<TcpSocket.TcpSocket> = []
        for (let i = 0; i < rounds; i++) {
          const waiting = yield* Effect.forkChild(listener.accept())
          if (i % 3 === 1) yield* Effect.yieldNow
          const client = yield* peer(listener.port)
          yield* write(client, new Uint8Array([i]))
          if (i % 3 === 2) yield* turns(1)
          yield* Fiber.interrupt(waiting)
          const exit = yield* Fiber.await(waiting)
          if (Exit.isSuccess(exit)) sockets.push(exit.value)
        }
        const handedOut = sockets.length
        while (sockets.length < rounds) sockets.push(yield* listener.accept(T))
        assertTimedOut(yield* Effect.flip(listener.accept({ timeout: "100 millis" })))
        const seen = new Set<number>()
        for (const socket of sockets) {
          const [tag] = yield* socket.recv(1, T)
          assert.isDefined(tag)
          if (tag !== undefined) seen.add(tag)
        }
        assert.strictEqual(seen.size, rounds, `accepted ${seen.size} distinct of ${rounds} (${handedOut} by interrupted accepts)`)
      })))
  })

    it.live("an accept timing out just as its connection arrives loses nothing", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const rounds = 60
        const clients: Array<Net.Socket> = []
        yield* Effect.addFinalizer(() => Effect.sync(() => clients.forEach((c) => c.destroy())))
        const sockets: Array<TcpSocket.TcpSocket> = []
        let timedOut = 0
        for (let i = 0; i < rounds; i++) {
          const waiting = yield* Effect.forkChild(listener.accept({ timeout: "20 millis" }))
          yield* Effect.yieldNow
          // A connect due around the accept's deadline: the deadline's timer
          // and the connection land in the same event-loop turn now and then.
          const index = i
          yield* Effect.callback<void>((resume) => {
            setTimeout(() => {
              const client = Net.connect({ port: listener.port, host: "127.0.0.1" }, () => {
                client.write(new Uint8Array([index]), () => resume(Effect.void))
              })
              client.on("error", () => {})
              clients.push(client)
            }, 14 + (i % 12))
          })
          const exit = yield* Fiber.await(waiting)
          if (Exit.isSuccess(exit)) sockets.push(exit.value)
          else timedOut += 1
        }
        while (sockets.length < rounds) {
          // Every client has connected and written: a lost connection shows as this accept timing out.
          const next = yield* Effect.exit(listener.accept(T))
          if (Exit.isFailure(next)) break
          sockets.push(next.value)
        }
        const seen = new Set<number>()
        for (const socket of sockets) {
          const [tag] = yield* socket.recv(1, T)
          if (tag !== undefined) seen.add(tag)
        }
        const lost = [...Array(rounds).keys()].filter((i) => !seen.has(i))
        assert.deepStrictEqual(lost, [], `connections lost (${timedOut} accepts timed out)`)
      }), TcpNode.layerWith({ slots: 128, bufferSize: 16 * 1024 })))

  describe("close", () => {
    it.live("a waiting accept fails Closed, later accepts fail Closed, close is idempotent", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const waiting = yield* forkWaiting(listener.accept(), "accept with nobody connecting")
        yield* listener.close
        const error = yield* Effect.flip(Fiber.join(waiting))
        assert.strictEqual(error._tag, "Closed")
        assert.strictEqual(error.errno, "EBADF")
        const later = yield* Effect.flip(listener.accept({ deadline: 0 }))
        assert.strictEqual(later._tag, "Closed")
        const laterWaiting = yield* Effect.flip(listener.accept())
        assert.strictEqual(laterWaiting._tag, "Closed")
        yield* listener.close
        const refused = yield* Effect.flip(TcpClient.connect(`127.0.0.1:${listener.port}`, T))
        assert.strictEqual(refused._tag, "ConnRefused")
      })))

    it.live("queued connections are closed (clients see EOF or reset); accepted sockets keep working", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const kept = yield* peer(listener.port)
        const keptSocket = yield* listener.accept(T)
        const queued = [yield* peer(listener.port), yield* peer(listener.port, { allowHalfOpen: true })]
        yield* write(queued[0] ?? kept, encoder.encode("unread bytes"))
        // Node queues both in its next I/O turns (if not, closing the listener drops them from the kernel's queue).
        yield* turns()
        assert.isFalse(queued.some((q) => q.hungUp()), "queued clients were dropped before close")
        yield* listener.close
        for (const [i, q] of queued.entries()) yield* waitUntil(q.hungUp, `queued client ${i} saw EOF or reset`)
        // the accepted one is not affected
        yield* write(kept, encoder.encode("still"))
        assert.strictEqual(text(yield* keptSocket.recv(5, T)), "still")
        yield* keptSocket.send(encoder.encode("here"), T)
        assert.strictEqual((yield* kept.take(4)).toString(), "here")
        assert.isFalse(kept.hungUp())
      })))
  })

  describe("pending", () => {
    it.live("with pending 2 and no accept running, only 2 of 5 connections stay open", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0", { pending: 2 })
        const clients: Array<Peer> = []
        for (let i = 0; i < 5; i++) {
          const client = yield* peer(listener.port)
          yield* write(client, new Uint8Array([i]))
          clients.push(client)
        }
        yield* waitUntil(() => clients.filter((c) => c.hungUp()).length >= 3, "3 clients were turned away")
        // Node took all five (in order) before turning the third away: any other hang-up shows in a few turns.
        yield* turns()
        const open = clients.flatMap((c, i) => (c.hungUp() ? [] : [i]))
        assert.deepStrictEqual(open, [0, 1], "the first two stay queued, later ones are closed at once")
        const stats = yield* TcpStorage.stats
        assert.strictEqual(stats.inUse, 0, "queued connections hold no storage slot")
        for (const i of open) {
          const socket = yield* listener.accept(T)
          const [tag] = yield* socket.recv(1, T)
          assert.strictEqual(tag, i)
          yield* socket.send(encoder.encode("hi"), T)
          const client = clients[i]
          if (client !== undefined) assert.strictEqual((yield* client.take(2)).toString(), "hi")
        }
        assertTimedOut(yield* Effect.flip(listener.accept({ timeout: "100 millis" })))
        // room again: a new connection is queued, not dropped
        const late = yield* peer(listener.port)
        yield* write(late, encoder.encode("z"))
        const socket = yield* listener.accept(T)
        assert.strictEqual(text(yield* socket.recv(1, T)), "z")
      })))

    it.live("pending 0 queues nothing, but a waiting accept still gets its connection", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0", { pending: 0 })
        const dropped = yield* peer(listener.port)
        yield* waitUntil(dropped.hungUp, "the unqueued client was closed")
        const waiting = yield* forkWaiting(listener.accept(T), "accept with nobody connecting")
        const client = yield* peer(listener.port)
        const socket = yield* Fiber.join(waiting)
        yield* write(client, encoder.encode("ok"))
        assert.strictEqual(text(yield* socket.recv(2, T)), "ok")
      })))
  })

  describe("storage", () => {
    it.live("accept into a slot from TcpStorage.acquire()", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const slot = yield* TcpStorage.acquire()
        assert.strictEqual((yield* TcpStorage.stats).inUse, 1)
        const client = yield* peer(listener.port)
        const socket = yield* listener.accept({ storage: slot, timeout: "3 seconds" })
        assert.strictEqual((yield* TcpStorage.stats).inUse, 1, "the socket lives in the caller's slot")
        const payload = randomBytes(3 * slot.bufferSize + 17)
        yield* write(client, payload)
        assert.strictEqual(sha256(yield* socket.recv(payload.length, T)), sha256(payload))
        // the same slot for a second live socket is InvalidArgument; the connection stays queued
        const second = yield* peer(listener.port)
        yield* write(second, encoder.encode("2nd"))
        const busy = yield* Effect.flip(listener.accept({ storage: slot, timeout: "1 second" }))
        assert.strictEqual(busy._tag, "InvalidArgument")
        // once the first socket is closed, the slot serves the next one
        yield* socket.close(T)
        yield* waitUntil(client.hungUp, "the first client saw our FIN")
        const next = yield* listener.accept({ storage: slot, timeout: "3 seconds" })
        assert.strictEqual(text(yield* next.recv(3, T)), "2nd")
        assert.strictEqual((yield* TcpStorage.stats).inUse, 1)
      })))

    it.live("a slot whose scope has closed is InvalidArgument for accept", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const stale = yield* Effect.scoped(TcpStorage.acquire())
        yield* peer(listener.port)
        const error = yield* Effect.flip(listener.accept({ storage: stale, timeout: "1 second" }))
        assert.strictEqual(error._tag, "InvalidArgument")
        // the connection was not consumed by the failed accept
        yield* listener.accept(T)
      })))

    it.live("\"wait\": accept waits for a slot when the pool is exhausted, then proceeds", () =>
      withTcp(
        Effect.gen(function*() {
          const listener = yield* TcpListener.listen("127.0.0.1:0")
          const holder = yield* holdSlot
          const client = yield* peer(listener.port)
          yield* write(client, encoder.encode("waited"))
          assertTimedOut(yield* Effect.flip(listener.accept({ timeout: "100 millis" })))
          const waiting = yield* Effect.forkChild(listener.accept({ timeout: "5 seconds" }))
          const waitingCount = (yield* statsWhen((s) => s.waiting === 1)).waiting
          assert.strictEqual(waitingCount, 1, "accept should be waiting for a slot")
          assert.isUndefined(waiting.pollUnsafe())
          yield* Scope.close(holder, Exit.void)
          const socket = yield* Fiber.join(waiting)
          assert.strictEqual(text(yield* socket.recv(6, T)), "waited")
        }),
        TcpNode.layerWith({ slots: 1, bufferSize: 16 * 1024 })
      ))

    it.live("\"fail\": accept fails OutOfMemory when the pool is exhausted, and the connection stays queued", () =>
      withTcp(
        Effect.gen(function*() {
          const listener = yield* TcpListener.listen("127.0.0.1:0")
          const holder = yield* holdSlot
          const client = yield* peer(listener.port)
          yield* write(client, encoder.encode("kept"))
          yield* turns()
          const error = yield* Effect.flip(listener.accept({ timeout: "2 seconds" }))
          assert.strictEqual(error._tag, "OutOfMemory")
          assert.strictEqual(error.errno, "ENOMEM")
          assert.strictEqual(error.syscall, "accept")
          yield* Scope.close(holder, Exit.void)
          const socket = yield* listener.accept(T)
          assert.strictEqual(text(yield* socket.recv(4, T)), "kept")
        }),
        TcpNode.layerWith({ slots: 1, bufferSize: 16 * 1024, onExhausted: "fail" })
      ))
  })

  describe("data through accepted sockets", () => {
    it.live("echo 1 MiB to a node:net client, checksummed", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const client = yield* peer(listener.port, { allowHalfOpen: true })
        const socket = yield* listener.accept(T)
        const payload = randomBytes(1024 * 1024)
        const server = yield* Effect.forkChild(echo(socket, payload.length, 64 * 1024))
        client.socket.write(payload)
        const back = yield* client.take(payload.length, 20_000)
        assert.strictEqual(yield* Fiber.join(server), sha256(payload), "server received the bytes intact")
        assert.strictEqual(sha256(back), sha256(payload), "client got the same bytes back")
        // then a clean shutdown: client FIN → PeerClosed with nothing, close completes
        client.socket.end()
        const eof = yield* Effect.flip(socket.recv(1, T))
        assert.strictEqual(eof._tag, "PeerClosed")
        assert.strictEqual(eof._tag === "PeerClosed" ? eof.bytes.length : -1, 0)
        yield* socket.close(T)
      })))

    it.live("1 MiB both directions at once between a TcpClient socket and an accepted one", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
        const server = yield* listener.accept(T)
        const up = randomBytes(1024 * 1024)
        const down = randomBytes(1024 * 1024)
        const timeout = { timeout: "20 seconds" } as const
        const [, , atServer, atClient] = yield* Effect.all([
          client.send(up, timeout),
          server.send(down, timeout),
          server.recv(up.length, timeout),
          client.recv(down.length, timeout)
        ], { concurrency: "unbounded" })
        assert.strictEqual(sha256(atServer), sha256(up))
        assert.strictEqual(sha256(atClient), sha256(down))
        yield* Effect.all([client.close(T), server.close(T)], { concurrency: 2 })
      })))

    it.live("bytes (and the FIN) a client sent before accept are not lost", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const small = yield* peer(listener.port, { allowHalfOpen: true })
        const big = yield* peer(listener.port, { allowHalfOpen: true })
        const payload = randomBytes(256 * 1024)
        small.socket.end(encoder.encode("hello"))
        big.socket.write(payload)
        // Both are in the kernel (as much of the payload as it takes before anyone reads) before accept.
        yield* waitUntil(() => small.socket.writableFinished, "the small client flushed its bytes and FIN")
        yield* turns()
        const first = yield* listener.accept(T)
        assert.strictEqual(text(yield* first.recv(5, T)), "hello")
        const eof = yield* Effect.flip(first.recv(1, T))
        assert.strictEqual(eof._tag, "PeerClosed")
        // the half-closed client still receives
        yield* first.send(encoder.encode("bye"), T)
        assert.strictEqual((yield* small.take(3)).toString(), "bye")
        const second = yield* listener.accept(T)
        const got = yield* second.recv(payload.length, { timeout: "10 seconds" })
        assert.strictEqual(sha256(got), sha256(payload))
      })))
  })

  describe("README", () => {
    it.live("the README's accept loop (accept, forkScoped a handler, forever) serves 10 concurrent clients", () =>
      withTcp(Effect.gen(function*() {
        // handler: 4-byte big-endian length, that many bytes, echoed back reversed
        const handle = (socket: TcpSocket.TcpSocket) =>
          Effect.gen(function*() {
            const header = yield* socket.recv(4, T)
            const length = new DataView(header.buffer, header.byteOffset, 4).getUint32(0)
            const body = yield* socket.recv(length, T)
            yield* socket.send(body.slice().reverse(), T)
            yield* socket.close(T)
          })
        const listener = yield* TcpListener.listen("127.0.0.1:0", { backlog: 128 })
        const server = yield* Effect.forkChild(
          listener.accept().pipe(
            Effect.flatMap((socket) => Effect.forkScoped(handle(socket))),
            Effect.forever
          )
        )
        const exchange = (i: number) =>
          Effect.scoped(Effect.gen(function*() {
            const socket = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
            const body = randomBytes(1000 + i * 997)
            const header = new Uint8Array(4)
            new DataView(header.buffer).setUint32(0, body.length)
            yield* socket.sendv([header, body], T)
            const back = yield* socket.recv(body.length, T)
            assert.isTrue(Buffer.from(back).equals(Buffer.from(body).reverse()), `client ${i}`)
            yield* socket.close(T)
          }))
        yield* Effect.forEach([...Array(10).keys()], exchange, { concurrency: "unbounded" })
        yield* Fiber.interrupt(server)
      })))
  })

  describe("peers that leave before accept", () => {
    it.live("a connection reset before accept is accepted; recv and send fail ConnReset", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const client = yield* peer(listener.port)
        // Node has taken the connection or takes it with its reset: either way before accept does.
        yield* turns()
        client.socket.resetAndDestroy()
        yield* turns()
        const socket = yield* listener.accept(T)
        const recvError = yield* Effect.flip(socket.recv(1, T))
        assert.strictEqual(recvError._tag, "ConnReset")
        assert.strictEqual(recvError.errno, "ECONNRESET")
        const sendError = yield* Effect.flip(socket.send(new Uint8Array(8), T))
        assert.oneOf(sendError._tag, ["ConnReset", "BrokenPipe"])
      })))

    it.live("errors of a socket whose peer reset before accept carry its address or none, never a placeholder", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const client = yield* peer(listener.port)
        const clientAddress = `127.0.0.1:${String(client.socket.localPort)}`
        // Node has taken the connection or takes it with its reset: either way before accept does.
        yield* turns()
        client.socket.resetAndDestroy()
        yield* turns()
        const socket = yield* listener.accept(T)
        const error = yield* Effect.flip(socket.recv(1, T))
        // DESIGN.md: `address` ("127.0.0.1:6379" where known)
        assert.oneOf(error.address, [clientAddress, undefined], `error.address ${String(error.address)}`)
      })))

    it.live("a connection finished (FIN) before accept: recv fails PeerClosed, send still works", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0", {})
        const client = yield* peer(listener.port, { allowHalfOpen: true })
        client.socket.end()
        yield* waitUntil(() => client.socket.writableFinished, "the client sent its FIN")
        yield* turns()
        const socket = yield* listener.accept(T)
        const error = yield* Effect.flip(socket.recv(1, T))
        assert.strictEqual(error._tag, "PeerClosed")
        yield* socket.send(encoder.encode("late"), T)
        assert.strictEqual((yield* client.take(4)).toString(), "late")
      })))
  })

  describe("descriptors", () => {
    it.live("1,000 connect+accept+close cycles leave no descriptors and no slots", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const address = `127.0.0.1:${listener.port}`
        const baseline = openFds()
        const one = new Uint8Array([1])
        let cycles = 0
        while (cycles < 1000) {
          const explicit = cycles % 2 === 0
          yield* Effect.scoped(Effect.gen(function*() {
            const client = yield* TcpClient.connect(address, T)
            const server = yield* listener.accept(T)
            yield* client.send(one, T)
            yield* server.recv(1, T)
            // half the cycles wait for the close, half leave it to the scope
            if (explicit) yield* Effect.all([client.close(T), server.close(T)], { concurrency: 2 })
          }))
          cycles += 1
        }
        yield* expectPoolIdle
        yield* fdsBackTo(baseline, "descriptors leaked by the cycles")
        const stats = yield* TcpStorage.stats
        assert.isAtMost(stats.slots, 32)
      })), 40_000)

    it.live.skipIf(prlimit !== undefined)(
      "a real EMFILE: a child limited to 64 descriptors gets TooManyOpenFiles, then recovers",
      () =>
        withTcp(Effect.gen(function*() {
          assert.isTrue(existsSync(emfileChild), emfileChild)
          const listener = yield* TcpListener.listen("127.0.0.1:0", { backlog: 511, pending: 300 })
          const output = yield* runProcess(
            "prlimit",
            ["--nofile=64:64", process.execPath, emfileChild, String(listener.port)],
            20_000
          )
          assert.isNull(output.signal, "the EMFILE child finished within 20 s")
          const lines = output.stdout.trim().split("\n").filter((l) => l.length > 0)
          assert.strictEqual(lines.length, 2, `child output: ${output.stdout}\nstderr: ${output.stderr}`)
          const exhausted: unknown = JSON.parse(lines[0] ?? "null")
          const recovered: unknown = JSON.parse(lines[1] ?? "null")
          assert.deepInclude(exhausted, {
            phase: "exhausted",
            tag: "TooManyOpenFiles",
            errno: "EMFILE",
            syscall: "connect"
          })
          const opened = (exhausted as { opened?: unknown }).opened
          assert.isNumber(opened)
          assert.isTrue(typeof opened === "number" && opened > 0 && opened < 64, `opened ${String(opened)}`)
          assert.deepStrictEqual(recovered, { phase: "recovered", ok: true })
          assert.strictEqual(output.code, 0, output.stderr)
        })),
      30_000
    )
  })
})

describe("TcpListener.fromFd", () => {
  checkFdLeaks()

  const child = fileURLToPath(new URL("./fixtures/listener-fromfd-child.ts", import.meta.url))

  it.live("adopts a listening descriptor inherited from a parent process", () =>
    Effect.gen(function*() {
      // python3 makes the listening socket and hands it to Node as descriptor 3
      // (Node has no public way to pass a listening descriptor to a child).
      const python = spawnSync("python3", ["--version"])
      if (python.error !== undefined) return console.log(`skipped: python3 is not available (${python.error.message})`)
      const script = [
        "import os, socket, sys",
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(16)",
        "os.dup2(s.fileno(), 3); os.set_inheritable(3, True)",
        "os.execv(sys.argv[1], sys.argv[1:])"
      ].join("\n")
      const output = yield* runProcess("python3", ["-c", script, process.execPath, child], 20_000)
      assert.isNull(output.signal, "the child finished within 20 s")
      const result: unknown = JSON.parse(output.stdout.trim() || "null")
      assert.deepInclude(result, { got: "over fd 3", inUse: 0 }, `stdout: ${output.stdout}\nstderr: ${output.stderr}`)
      assert.match(String((result as { address?: unknown }).address), /^127\.0\.0\.1:\d+$/)
    }))

  it.live("a descriptor that is not a TCP socket is InvalidArgument, and stays open", () =>
    withTcp(Effect.gen(function*() {
      const fd = openSync(fileURLToPath(import.meta.url), "r")
      try {
        const error = yield* Effect.flip(TcpListener.fromFd(fd))
        assert.strictEqual(error._tag, "InvalidArgument")
        assert.isTrue(fstatSync(fd).isFile(), "the caller's descriptor is still open")
      } finally {
        closeSync(fd)
      }
      for (const bad of [-1, 1.5, Number.NaN]) {
        assert.strictEqual((yield* Effect.flip(TcpListener.fromFd(bad)))._tag, "InvalidArgument")
      }
    })))
})
