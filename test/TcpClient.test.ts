import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer } from "effect"
import { AddressResolver, NetAddress } from "effect/net"
import { TestClock } from "effect/testing"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { Deadline, TcpClient, TcpError, TcpListener, TcpStorage } from "../src/index.ts"
import {
  checkFdLeaks,
  closedPort,
  echoServer,
  eventually,
  expectPoolIdle,
  expectWaiting,
  fdsBackTo,
  forkWaiting,
  fullBacklog,
  openFds,
  rawServer,
  resolvingTcp,
  roundTrip,
  statsWhen,
  TestTcp,
  withTcp
} from "./helpers.ts"

// ---------------------------------------------------------------- fixtures

/** Whether this machine has an IPv6 loopback: try to listen on ::1. */
const ipv6Loopback: boolean = await new Promise<boolean>((resolve) => {
  const server = Net.createServer()
  server.once("error", () => resolve(false))
  server.listen(0, "::1", () => server.close(() => resolve(true)))
})
if (!ipv6Loopback) {
  console.log("TcpClient.test: skipping [::1] tests: this machine cannot listen on the IPv6 loopback ::1")
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const formatted = (address: NetAddress.InetAddress | undefined): string | undefined =>
  address === undefined ? undefined : NetAddress.formatInet(address)

/**
 * Connects to an echo server on `host` through each form of its address:
 * "`literal`:port", { host, port } and an InetAddress. Each reaches it
 * (remote address "`literal`:port") and echoes.
 */
const everyAddressForm = (host: string, literal: string) =>
  Effect.gen(function*() {
    const server = yield* echoServer(host)
    const port = server.port
    const forms: ReadonlyArray<TcpClient.TcpAddress> = [
      `${literal}:${port}`,
      { host, port },
      NetAddress.inetAddressFromIpStringUnsafe(host, port)
    ]
    for (const [i, form] of forms.entries()) {
      yield* Effect.scoped(Effect.gen(function*() {
        const socket = yield* TcpClient.connect(form, { timeout: "2 seconds" })
        assert.strictEqual(formatted(socket.remoteAddress), `${literal}:${port}`, `form ${i}`)
        yield* roundTrip(socket, `form ${i}`)
        yield* socket.close({ timeout: "2 seconds" })
      }))
    }
    assert.strictEqual(server.peers.length, forms.length)
  })

const expectInvalid = (error: TcpError.ConnectError, what: string) => {
  assert.strictEqual(error._tag, "InvalidArgument", `${what}: got ${error._tag} (${error.message})`)
  assert.strictEqual(error.errno, "EINVAL", what)
  assert.strictEqual(error.syscall, "connect", what)
  assert.isTrue(error.message.length > 0, what)
}

const testPool = { slots: 32, bufferSize: 16 * 1024 } as const

/** Names from fixed data: "db.test" is 127.0.0.1, nothing else resolves. */
const StaticTcp = resolvingTcp({ "db.test": ["127.0.0.1"] }, testPool)

/** A resolver that never answers. */
const neverResolver = Layer.succeed(
  AddressResolver.AddressResolver,
  AddressResolver.AddressResolver.of({ resolve: () => Effect.never })
)
const NeverTcp = TcpClient.layer.pipe(
  Layer.provide(neverResolver),
  Layer.provideMerge(TcpStorage.layer(testPool))
)

const repoRoot = fileURLToPath(new URL("..", import.meta.url))
const srcIndex = fileURLToPath(new URL("../src/index.ts", import.meta.url))

/**
 * Runs `script` (an ES module that imports effect-tcp from `SRC_INDEX`) in a
 * child Node process with `fd3` as its descriptor 3; resolves with the last
 * line it printed. The child is killed after 10 s.
 */
const runChild = (
  script: string,
  fd3: Net.Socket | "pipe"
): Effect.Effect<string, Error> =>
  Effect.callback<string, Error>((resume) => {
    const child = spawn(
      process.execPath,
      ["--input-type=module", "-e", script.replaceAll("SRC_INDEX", JSON.stringify(srcIndex))],
      { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit", fd3] }
    )
    let out = ""
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString()
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
    child.once("error", (e) => {
      clearTimeout(timer)
      resume(Effect.fail(e))
    })
    child.once("close", (code) => {
      clearTimeout(timer)
      const last = out.trim().split("\n").at(-1) ?? ""
      resume(code === 0 ? Effect.succeed(last) : Effect.fail(new Error(`child exited ${String(code)}: ${out}`)))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      child.kill("SIGKILL")
    })
  })

/** The child's side of the fromFd tests: adopt fd 3, report what happened as JSON. */
const fromFdChild = (body: string) => `
  import { Effect, Schedule } from "effect"
  import { NetAddress } from "effect/net"
  import { TcpClient, TcpNode, TcpStorage } from SRC_INDEX
  const fmt = (a) => a === undefined ? null : NetAddress.formatInet(a)
  const program = Effect.gen(function*() {
    const result = yield* Effect.scoped(Effect.gen(function*() {
      const socket = yield* TcpClient.fromFd(3, { timeout: "2 seconds" })
      ${body}
    })).pipe(Effect.catch((e) => Effect.succeed({ tag: e._tag, errno: e.errno })))
    const idle = yield* TcpStorage.stats.pipe(
      Effect.filterOrFail((s) => s.inUse === 0),
      Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 300 }),
      Effect.catch(() => Effect.void),
      Effect.andThen(TcpStorage.stats)
    )
    return { ...result, inUse: idle.inUse }
  }).pipe(Effect.provide(TcpNode.layer))
  Effect.runPromise(program).then(
    (r) => { console.log(JSON.stringify(r)); process.exit(0) },
    (e) => { console.log(JSON.stringify({ defect: String(e) })); process.exit(0) }
  )
`

// ------------------------------------------------------------------ tests

describe("TcpClient", () => {
  checkFdLeaks()

  describe("connect succeeds", () => {
    it.live("to a node:net peer on 127.0.0.1", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const socket = yield* TcpClient.connect(`127.0.0.1:${server.port}`, { timeout: "2 seconds" })
        yield* roundTrip(socket, "hello")
        assert.strictEqual(server.peers.length, 1)
        const peer = server.peers[0]
        assert.strictEqual(formatted(socket.remoteAddress), `127.0.0.1:${server.port}`)
        assert.strictEqual(formatted(socket.localAddress), `127.0.0.1:${peer?.remotePort}`)
        yield* socket.close({ timeout: "2 seconds" })
      })))

    it.live("to a TcpListener on 127.0.0.1", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("127.0.0.1:0")
        const accepting = yield* Effect.forkChild(listener.accept({ timeout: "2 seconds" }))
        const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, { timeout: "2 seconds" })
        const server = yield* Fiber.join(accepting)
        assert.strictEqual(formatted(client.remoteAddress), `127.0.0.1:${listener.port}`)
        assert.strictEqual(formatted(server.remoteAddress), formatted(client.localAddress))
        assert.strictEqual(formatted(server.localAddress), formatted(client.remoteAddress))
        yield* client.send(encoder.encode("ping"))
        assert.strictEqual(decoder.decode(yield* server.recv(4, { timeout: "2 seconds" })), "ping")
        yield* server.send(encoder.encode("pong"))
        assert.strictEqual(decoder.decode(yield* client.recv(4, { timeout: "2 seconds" })), "pong")
        yield* Effect.all([client.close({ timeout: "2 seconds" }), server.close({ timeout: "2 seconds" })], {
          concurrency: 2
        })
      })))

    it.live.skipIf(!ipv6Loopback)("to a node:net peer on [::1]", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer("::1")
        const socket = yield* TcpClient.connect(`[::1]:${server.port}`, { timeout: "2 seconds" })
        yield* roundTrip(socket, "hello v6")
        const remote = socket.remoteAddress
        assert.isTrue(remote !== undefined && NetAddress.isInetAddressV6(remote), "remote is IPv6")
        assert.strictEqual(formatted(remote), `[::1]:${server.port}`)
        assert.strictEqual(formatted(socket.localAddress), `[::1]:${server.peers[0]?.remotePort}`)
        yield* socket.close({ timeout: "2 seconds" })
      })))

    it.live.skipIf(!ipv6Loopback)("to a TcpListener on [::1]", () =>
      withTcp(Effect.gen(function*() {
        const listener = yield* TcpListener.listen("[::1]:0")
        const accepting = yield* Effect.forkChild(listener.accept({ timeout: "2 seconds" }))
        const client = yield* TcpClient.connect(`[::1]:${listener.port}`, { timeout: "2 seconds" })
        const server = yield* Fiber.join(accepting)
        assert.strictEqual(formatted(client.remoteAddress), `[::1]:${listener.port}`)
        assert.strictEqual(formatted(server.remoteAddress), formatted(client.localAddress))
        yield* client.send(encoder.encode("v6"))
        assert.strictEqual(decoder.decode(yield* server.recv(2, { timeout: "2 seconds" })), "v6")
        yield* Effect.all([client.close({ timeout: "2 seconds" }), server.close({ timeout: "2 seconds" })], {
          concurrency: 2
        })
      })))
  })

  describe("address forms", () => {
    it.live("\"127.0.0.1:p\", { host, port } and an InetAddress", () =>
      withTcp(everyAddressForm("127.0.0.1", "127.0.0.1")))

    it.live.skipIf(!ipv6Loopback)("\"[::1]:p\", { host: \"::1\", port } and an IPv6 InetAddress", () =>
      withTcp(everyAddressForm("::1", "[::1]")))

    it.live("localAddress and remoteAddress match the peer's view", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const socket = yield* TcpClient.connect(`127.0.0.1:${server.port}`, { timeout: "2 seconds" })
        yield* roundTrip(socket, "x")
        const peer = server.peers[0]
        assert.isDefined(peer)
        const local = socket.localAddress
        const remote = socket.remoteAddress
        assert.isTrue(local !== undefined && NetAddress.isInetAddressV4(local), "local is IPv4")
        assert.isTrue(remote !== undefined && NetAddress.isInetAddressV4(remote), "remote is IPv4")
        assert.strictEqual(local?.port, peer?.remotePort)
        assert.strictEqual(remote?.port, peer?.localPort)
        assert.notStrictEqual(local?.port, remote?.port)
        yield* socket.close({ timeout: "2 seconds" })
      })))
  })

  describe("names", () => {
    it.live("\"localhost:p\" resolves (family ipv4)", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const socket = yield* TcpClient.connect(`localhost:${server.port}`, { family: "ipv4", timeout: "5 seconds" })
        assert.strictEqual(formatted(socket.remoteAddress), `127.0.0.1:${server.port}`)
        yield* roundTrip(socket, "localhost")
        assert.strictEqual(server.peers.length, 1)
        yield* socket.close({ timeout: "2 seconds" })
      })))

    it.live("names resolve through the AddressResolver the application provides", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const forms: ReadonlyArray<TcpClient.TcpAddress> = [`db.test:${server.port}`, {
          host: "db.test",
          port: server.port
        }]
        for (const form of forms) {
          yield* Effect.scoped(Effect.gen(function*() {
            const socket = yield* TcpClient.connect(form, { timeout: "2 seconds" })
            assert.strictEqual(formatted(socket.remoteAddress), `127.0.0.1:${server.port}`)
            yield* roundTrip(socket, "db")
            yield* socket.close({ timeout: "2 seconds" })
          }))
        }
        assert.strictEqual(server.peers.length, 2, "both connects reached the listener")
      }), StaticTcp))

    it.live("a name the resolver does not know fails with AddrNotAvail", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const error = yield* Effect.flip(
          TcpClient.connect(`nowhere.test:${server.port}`, { timeout: "2 seconds" })
        )
        assert.strictEqual(error._tag, "AddrNotAvail")
        assert.strictEqual(error.errno, "EADDRNOTAVAIL")
        assert.strictEqual(error.syscall, "connect")
        assert.strictEqual(error.address, `nowhere.test:${server.port}`)
        assert.include(error.message, "nowhere.test")
        assert.strictEqual(server.peers.length, 0)
      }), StaticTcp))

    it.live("a resolver that never answers: connect fails TimedOut at the deadline", () =>
      Effect.gen(function*() {
        const start = Date.now()
        const error = yield* Effect.flip(
          Effect.scoped(TcpClient.connect("slow.test:80", { timeout: "300 millis" }))
        )
        assert.strictEqual(error._tag, "TimedOut")
        assert.strictEqual(error.errno, "ETIMEDOUT")
        assert.strictEqual(error.syscall, "connect")
        assert.strictEqual(error.address, "slow.test:80")
        assert.isAtLeast(Date.now() - start, 250)
        // An absolute deadline bounds resolution the same way.
        const deadline = (yield* Deadline.now) + 300
        const start2 = Date.now()
        const error2 = yield* Effect.flip(Effect.scoped(TcpClient.connect("slow.test:80", { deadline })))
        assert.strictEqual(error2._tag, "TimedOut")
        assert.isAtLeast(Date.now() - start2, 250)
        yield* expectPoolIdle
      }).pipe(Effect.provide(NeverTcp)))

    it.live("a connect waiting on the resolver (deadline -1) can be interrupted", () =>
      Effect.gen(function*() {
        const fiber = yield* forkWaiting(
          Effect.scoped(TcpClient.connect("slow.test:80", { deadline: -1 })),
          "connect to a name the resolver never answers"
        )
        yield* Fiber.interrupt(fiber)
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.hasInterrupts(exit), "ended interrupted")
        yield* expectPoolIdle
      }).pipe(Effect.provide(NeverTcp)))

    it.live("literals skip the resolver", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const socket = yield* TcpClient.connect(`127.0.0.1:${server.port}`, { timeout: "2 seconds" })
        yield* roundTrip(socket, "literal")
        yield* socket.close({ timeout: "2 seconds" })
      }), NeverTcp))
  })

  describe("errors reproduced for real", () => {
    it.live("ConnRefused on a closed port carries errno, syscall, address and a message", () =>
      Effect.gen(function*() {
        const port = yield* closedPort
        const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(`127.0.0.1:${port}`, { timeout: "2 seconds" })))
        assert.strictEqual(error._tag, "ConnRefused")
        assert.instanceOf(error, TcpError.ConnRefused)
        assert.strictEqual(error.errno, "ECONNREFUSED")
        assert.strictEqual(error.syscall, "connect")
        assert.strictEqual(error.address, `127.0.0.1:${port}`)
        assert.include(error.message, `127.0.0.1:${port}`)
        assert.match(error.message, /refused/i)
        yield* expectPoolIdle
      }).pipe(Effect.provide(TestTcp)))

    it.live.skipIf(!ipv6Loopback)("ConnRefused on a closed [::1] port", () =>
      Effect.gen(function*() {
        const port = yield* Effect.callback<number>((resume) => {
          const server = Net.createServer()
          server.listen(0, "::1", () => {
            const bound = (server.address() as Net.AddressInfo).port
            server.close(() => resume(Effect.succeed(bound)))
          })
        })
        const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(`[::1]:${port}`, { timeout: "2 seconds" })))
        assert.strictEqual(error._tag, "ConnRefused")
        assert.strictEqual(error.errno, "ECONNREFUSED")
        assert.strictEqual(error.address, `[::1]:${port}`)
        yield* expectPoolIdle
      }).pipe(Effect.provide(TestTcp)))

    it.live("TimedOut against a full backlog", () =>
      Effect.gen(function*() {
        const full = yield* fullBacklog
        const start = Date.now()
        const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(full.address, { timeout: "300 millis" })))
        assert.strictEqual(error._tag, "TimedOut")
        assert.strictEqual(error.errno, "ETIMEDOUT")
        assert.strictEqual(error.syscall, "connect")
        assert.strictEqual(error.address, full.address)
        assert.include(error.message, full.address)
        assert.isAtLeast(Date.now() - start, 250)
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(TestTcp)))

    it.live("InvalidArgument for bad addresses", () =>
      Effect.gen(function*() {
        const server = yield* echoServer()
        const bad: ReadonlyArray<readonly [string, TcpClient.TcpAddress]> = [
          ["port 0", "127.0.0.1:0"],
          ["port 65536", "127.0.0.1:65536"],
          ["empty string", ""],
          ["no port", "nohostport"],
          ["negative port", "1.2.3.4:-1"],
          ["unclosed bracket", "[::1:80"],
          ["bracket without port", "[::1]"],
          ["empty host", { host: "", port: 1 }],
          ["object port 0", { host: "127.0.0.1", port: 0 }],
          ["object port 65536", { host: "127.0.0.1", port: 65536 }],
          ["fractional port", { host: "127.0.0.1", port: 1.5 }],
          ["string port in object", { host: "127.0.0.1", port: String(server.port) as never }],
          ["number", 42 as never],
          ["null", null as never],
          ["undefined", undefined as never],
          ["boolean", true as never]
        ]
        for (const [what, address] of bad) {
          const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(address, { timeout: "2 seconds" })))
          expectInvalid(error, what)
        }
        assert.strictEqual(server.peers.length, 0, "no connection was made")
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(TestTcp)))

    it.live("InvalidArgument for bad option values", () =>
      Effect.gen(function*() {
        const server = yield* echoServer()
        const address = `127.0.0.1:${server.port}`
        const bad: ReadonlyArray<readonly [string, TcpClient.ConnectOptions & { readonly tls?: undefined }]> = [
          ["family ipv5", { family: "ipv5" as never }],
          ["noDelay yes", { noDelay: "yes" as never }],
          ["closeTimeout -1", { closeTimeout: -1 }],
          ["closeTimeout nonsense", { closeTimeout: "nonsense" as never }],
          ["keepAlive sometimes", { keepAlive: "sometimes" as never }],
          ["deadline NaN", { deadline: Number.NaN }],
          ["deadline -2", { deadline: -2 }],
          ["timeout nonsense", { timeout: "nonsense" as never }],
          ["timeout negative", { timeout: -5 }],
          ["storage not a slot", { storage: { id: 0, bufferSize: 16384 } }]
        ]
        for (const [what, options] of bad) {
          const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(address, options)))
          expectInvalid(error, what)
          assert.strictEqual(error.address, address, what)
        }
        assert.strictEqual(server.peers.length, 0, "no connection was made")
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(TestTcp)))
  })

  describe("deadlines", () => {
    it.live("deadline 0 fails TimedOut: a handshake always waits", () =>
      Effect.gen(function*() {
        const server = yield* echoServer()
        const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(`127.0.0.1:${server.port}`, { deadline: 0 })))
        assert.strictEqual(error._tag, "TimedOut")
        assert.strictEqual(error.syscall, "connect")
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(TestTcp)))

    it.live("a past deadline fails TimedOut", () =>
      Effect.gen(function*() {
        const server = yield* echoServer()
        const address = `127.0.0.1:${server.port}`
        const error = yield* Effect.flip(Effect.scoped(TcpClient.connect(address, { deadline: 1 })))
        assert.strictEqual(error._tag, "TimedOut")
        const justNow = (yield* Deadline.now) - 1
        const error2 = yield* Effect.flip(Effect.scoped(TcpClient.connect(address, { deadline: justNow })))
        assert.strictEqual(error2._tag, "TimedOut")
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(TestTcp)))

    it.live("deadline -1 against a listener succeeds", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const socket = yield* TcpClient.connect(`127.0.0.1:${server.port}`, { deadline: -1 })
        yield* roundTrip(socket, "forever")
        yield* socket.close({ timeout: "2 seconds" })
      })))

    it.live("deadline -1 against a full backlog can be interrupted", () =>
      Effect.gen(function*() {
        const full = yield* fullBacklog
        const fdsBefore = openFds()
        const fiber = yield* forkWaiting(
          Effect.scoped(TcpClient.connect(full.address, { deadline: -1 })),
          "connect to a full backlog"
        )
        const inFlight = yield* statsWhen((s) => s.inUse === 1)
        assert.strictEqual(inFlight.inUse, 1, "the connect in flight holds a slot")
        yield* Fiber.interrupt(fiber)
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.isFailure(exit) && Exit.hasInterrupts(exit), `ended interrupted: ${String(exit)}`)
        yield* expectPoolIdle
        yield* fdsBackTo(fdsBefore)
      }).pipe(Effect.scoped, Effect.provide(TestTcp)))

    it.live("interrupting a connect in flight (with a timeout) releases the slot and descriptor", () =>
      Effect.gen(function*() {
        const full = yield* fullBacklog
        const fdsBefore = openFds()
        const fiber = yield* Effect.forkChild(Effect.scoped(TcpClient.connect(full.address, { timeout: "20 seconds" })))
        assert.strictEqual((yield* statsWhen((s) => s.inUse === 1)).inUse, 1, "the connect in flight holds a slot")
        yield* eventually(() => openFds() > fdsBefore, "the connect in flight holds a descriptor")
        assert.isUndefined(fiber.pollUnsafe(), "connect still waiting")
        yield* Fiber.interrupt(fiber)
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.hasInterrupts(exit), "ended interrupted")
        yield* expectPoolIdle
        yield* fdsBackTo(fdsBefore)
        // The released slot serves the next connect.
        yield* Effect.scoped(Effect.gen(function*() {
          const server = yield* echoServer()
          const socket = yield* TcpClient.connect(`127.0.0.1:${server.port}`, { timeout: "2 seconds" })
          yield* roundTrip(socket, "after")
          yield* socket.close({ timeout: "2 seconds" })
        }))
        assert.strictEqual((yield* TcpStorage.stats).slots, 1, "the same slot was reused")
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(TestTcp)))

    it.effect.each([
      { earlier: "timeout", deadlineIn: 3_600_000, timeout: "300 millis" },
      { earlier: "deadline", deadlineIn: 300, timeout: "1 hour" }
    ] as const)("timeout vs deadline: the earlier wins ($earlier earlier)", ({ deadlineIn, earlier, timeout }) =>
      Effect.gen(function*() {
        yield* TestClock.setTime(1_000_000)
        const full = yield* TestClock.withLive(fullBacklog)
        const deadline = (yield* Deadline.now) + deadlineIn
        const fiber = yield* forkWaiting(
          Effect.scoped(TcpClient.connect(full.address, { deadline, timeout })),
          "connect to a full backlog"
        )
        yield* TestClock.adjust("299 millis")
        yield* expectWaiting(fiber, `connect timed out before the ${earlier}`)
        yield* TestClock.adjust("1 millis")
        yield* eventually(() => fiber.pollUnsafe() !== undefined, `timed out when the (earlier) ${earlier} passed`)
        const error = yield* Effect.flip(Fiber.join(fiber))
        assert.strictEqual(error._tag, "TimedOut")
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(TestTcp)))

    it.live("timeout vs deadline with the real clock: either one bounds the call", () =>
      Effect.gen(function*() {
        const full = yield* fullBacklog
        const start = Date.now()
        const e1 = yield* Effect.flip(
          Effect.scoped(TcpClient.connect(full.address, { deadline: (yield* Deadline.now) + 300, timeout: "20 seconds" }))
        )
        assert.strictEqual(e1._tag, "TimedOut")
        assert.isAtLeast(Date.now() - start, 250)
        const start2 = Date.now()
        const e2 = yield* Effect.flip(
          Effect.scoped(TcpClient.connect(full.address, { deadline: (yield* Deadline.now) + 20_000, timeout: 300 }))
        )
        assert.strictEqual(e2._tag, "TimedOut")
        assert.isAtLeast(Date.now() - start2, 250)
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(TestTcp)))
  })

  describe("storage option", () => {
    it.live("connect with a slot from TcpStorage.acquire works", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const slot = yield* TcpStorage.acquire()
        assert.strictEqual((yield* TcpStorage.stats).inUse, 1)
        const socket = yield* TcpClient.connect(`127.0.0.1:${server.port}`, { storage: slot, timeout: "2 seconds" })
        const stats = yield* TcpStorage.stats
        assert.strictEqual(stats.inUse, 1, "the socket lives in the acquired slot")
        assert.strictEqual(stats.slots, 1)
        yield* roundTrip(socket, "in my slot")
        yield* socket.close({ timeout: "2 seconds" })
      })))

    it.live("the same slot passed to a second live socket fails InvalidArgument", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const address = `127.0.0.1:${server.port}`
        const slot = yield* TcpStorage.acquire()
        const first = yield* TcpClient.connect(address, { storage: slot, timeout: "2 seconds" })
        const error = yield* Effect.flip(
          Effect.scoped(TcpClient.connect(address, { storage: slot, timeout: "2 seconds" }))
        )
        expectInvalid(error, "slot in use")
        // The first socket is undisturbed.
        yield* roundTrip(first, "still mine")
        assert.strictEqual((yield* TcpStorage.stats).inUse, 1)
        yield* first.close({ timeout: "2 seconds" })
      })))

    it.live("a slot whose scope closed (stale) fails InvalidArgument", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const stale = yield* Effect.scoped(TcpStorage.acquire())
        assert.strictEqual((yield* TcpStorage.stats).inUse, 0)
        const error = yield* Effect.flip(
          Effect.scoped(TcpClient.connect(`127.0.0.1:${server.port}`, { storage: stale, timeout: "2 seconds" }))
        )
        expectInvalid(error, "stale slot")
        // Also when the slot's memory went to someone else in the meantime.
        const other = yield* TcpStorage.acquire()
        assert.strictEqual(other.id, stale.id, "the pool reused the slot")
        const error2 = yield* Effect.flip(
          Effect.scoped(TcpClient.connect(`127.0.0.1:${server.port}`, { storage: stale, timeout: "2 seconds" }))
        )
        expectInvalid(error2, "stale slot reused by another holder")
        assert.strictEqual(server.peers.length, 0)
      })))

    it.live("after the first socket closes, the slot can serve a new connect", () =>
      withTcp(Effect.gen(function*() {
        const server = yield* echoServer()
        const address = `127.0.0.1:${server.port}`
        const slot = yield* TcpStorage.acquire()
        const first = yield* TcpClient.connect(address, { storage: slot, timeout: "2 seconds" })
        yield* roundTrip(first, "one")
        yield* first.close({ timeout: "2 seconds" })
        const second = yield* TcpClient.connect(address, { storage: slot, timeout: "2 seconds" })
        yield* roundTrip(second, "two")
        assert.strictEqual((yield* TcpStorage.stats).slots, 1)
        yield* second.close({ timeout: "2 seconds" })
        // And once more after an abort.
        const third = yield* TcpClient.connect(address, { storage: slot, timeout: "2 seconds" })
        yield* third.abort
        const fourth = yield* TcpClient.connect(address, { storage: slot, timeout: "2 seconds" })
        yield* roundTrip(fourth, "four")
        yield* fourth.close({ timeout: "2 seconds" })
      })))

    it.live("a failed connect with a slot leaves the slot usable", () =>
      withTcp(Effect.gen(function*() {
        const port = yield* closedPort
        const slot = yield* TcpStorage.acquire()
        const error = yield* Effect.flip(
          Effect.scoped(TcpClient.connect(`127.0.0.1:${port}`, { storage: slot, timeout: "2 seconds" }))
        )
        assert.strictEqual(error._tag, "ConnRefused")
        assert.strictEqual((yield* TcpStorage.stats).inUse, 1, "the acquiring scope still holds it")
        const server = yield* echoServer()
        const socket = yield* TcpClient.connect(`127.0.0.1:${server.port}`, { storage: slot, timeout: "2 seconds" })
        yield* roundTrip(socket, "retry")
        yield* socket.close({ timeout: "2 seconds" })
      })))
  })

  describe("fromFd", () => {
    it.live("rejects -1, 1.5, NaN and a descriptor that is not a socket with InvalidArgument", () =>
      Effect.gen(function*() {
        for (const fd of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
          const error = yield* Effect.flip(Effect.scoped(TcpClient.fromFd(fd)))
          assert.strictEqual(error._tag, "InvalidArgument", `fd ${fd}`)
          assert.strictEqual(error.errno, "EINVAL")
        }
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-tcp-"))
        const file = Path.join(dir, "not-a-socket")
        Fs.writeFileSync(file, "plain file")
        const fd = Fs.openSync(file, "r")
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            Fs.closeSync(fd)
            Fs.rmSync(dir, { recursive: true, force: true })
          })
        )
        const error = yield* Effect.flip(Effect.scoped(TcpClient.fromFd(fd)))
        assert.strictEqual(error._tag, "InvalidArgument", `a file: got ${error._tag}`)
        assert.strictEqual(error.errno, "EINVAL")
        // The library did not take the caller's descriptor.
        assert.isTrue(Fs.fstatSync(fd).isFile())
        yield* expectPoolIdle
      }).pipe(Effect.scoped, Effect.provide(TestTcp)))

    it.live("adopts a connected descriptor inherited by a child process", () =>
      Effect.gen(function*() {
        const received: Array<string> = []
        const server = yield* rawServer((socket) => {
          socket.on("error", () => {})
          socket.on("data", (chunk: Buffer) => {
            received.push(chunk.toString())
            socket.write("world")
          })
          socket.on("end", () => socket.end())
        })
        const client = yield* Effect.acquireRelease(
          Effect.callback<Net.Socket, Error>((resume) => {
            const socket = Net.connect({ port: server.port, host: "127.0.0.1" })
            socket.once("connect", () => resume(Effect.succeed(socket)))
            socket.once("error", (e) => resume(Effect.fail(e)))
          }),
          (socket) => Effect.sync(() => socket.destroy())
        )
        const clientPort = client.localPort
        const output = yield* runChild(
          fromFdChild(`
            yield* socket.send(new TextEncoder().encode("hello"))
            const back = yield* socket.recv(5, { timeout: "2 seconds" })
            const out = {
              tag: "ok",
              got: new TextDecoder().decode(back),
              remote: fmt(socket.remoteAddress),
              local: fmt(socket.localAddress)
            }
            yield* socket.close({ timeout: "2 seconds" })
            return out
          `),
          client
        )
        const result: unknown = JSON.parse(output)
        assert.deepStrictEqual(result, {
          tag: "ok",
          got: "world",
          remote: `127.0.0.1:${server.port}`,
          local: `127.0.0.1:${clientPort}`,
          inUse: 0
        })
        assert.deepStrictEqual(received, ["hello"])
      }).pipe(Effect.scoped), 20_000)

    it.live("rejects a descriptor that is a socket but not TCP (a UNIX socket) with InvalidArgument", () =>
      Effect.gen(function*() {
        // libuv gives the child a UNIX-domain socket pair end as fd 3.
        const output = yield* runChild(
          fromFdChild(`
            return { tag: "ok", remote: fmt(socket.remoteAddress), local: fmt(socket.localAddress) }
          `),
          "pipe"
        )
        const result: unknown = JSON.parse(output)
        assert.deepStrictEqual(result, { tag: "InvalidArgument", errno: "EINVAL", inUse: 0 })
      }), 20_000)
  })
})

describe("TcpClient local binding", () => {
  checkFdLeaks()

  it.live("localAddress and localPort bind our end; the peer sees them", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoServer()
      const port = yield* closedPort
      const socket = yield* TcpClient.connect(server.address, { timeout: "2 seconds", localAddress: "127.0.0.2", localPort: port })
      const local = socket.localAddress
      assert.isDefined(local)
      assert.strictEqual(local === undefined ? "" : NetAddress.formatInet(local), `127.0.0.2:${port}`)
      yield* roundTrip(socket, "bound")
      yield* socket.close({ timeout: "2 seconds" })
    })))

  it.live("bad local bindings are InvalidArgument; a local address that is not ours is AddrNotAvail", () =>
    withTcp(Effect.gen(function*() {
      const server = yield* echoServer()
      for (const options of [{ localAddress: "not-an-ip" }, { localPort: 70000 }, { localPort: -1 }, { localAddress: "::1", family: "ipv4" as const }]) {
        const error = yield* Effect.flip(TcpClient.connect(server.address, { timeout: "2 seconds", ...options }))
        assert.strictEqual(error._tag, "InvalidArgument", JSON.stringify(options))
      }
      // 192.0.2.1 (a documentation address) is on no interface here: the bind fails before any packet is sent.
      const error = yield* Effect.flip(TcpClient.connect(server.address, { timeout: "2 seconds", localAddress: "192.0.2.1" }))
      assert.strictEqual(error._tag, "AddrNotAvail")
    })))
})

describe("TcpClient happy eyeballs", () => {
  checkFdLeaks()

  it.live("a first address that hangs does not stop the second: it connects after the delay", () =>
    Effect.gen(function*() {
      const full = yield* fullBacklog // 127.0.0.1:P never completes a handshake
      const listener = yield* TcpListener.listen(`[::1]:${full.port}`) // the same port on ::1 does
      const socket = yield* TcpClient.connect(`dual.test:${full.port}`, {
        timeout: "3 seconds",
        happyEyeballs: "100 millis"
      })
      const remote = socket.remoteAddress
      assert.strictEqual(remote === undefined ? "" : NetAddress.formatInet(remote), `[::1]:${full.port}`)
      const accepted = yield* listener.accept({ timeout: "2 seconds" })
      yield* socket.send(new TextEncoder().encode("hi"))
      assert.strictEqual(new TextDecoder().decode(yield* accepted.recv(2, { timeout: "2 seconds" })), "hi")
      yield* accepted.send(new TextEncoder().encode("yo"))
      assert.strictEqual(new TextDecoder().decode(yield* socket.recv(2, { timeout: "2 seconds" })), "yo")
      // Without happy eyeballs the hanging address holds the whole deadline.
      const error = yield* Effect.flip(
        Effect.scoped(TcpClient.connect(`dual.test:${full.port}`, { timeout: "300 millis" }))
      )
      assert.strictEqual(error._tag, "TimedOut")
      yield* socket.abort
      yield* accepted.abort
      yield* expectPoolIdle
    }).pipe(Effect.scoped, Effect.provide(resolvingTcp({ "dual.test": ["127.0.0.1", "::1"] }))))

  it.live("every address failing fails the connect; nothing is left open", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const error = yield* Effect.flip(
        Effect.scoped(TcpClient.connect(`nowhere.test:${port}`, { timeout: "2 seconds", happyEyeballs: true }))
      )
      assert.strictEqual(error._tag, "ConnRefused")
      const bad = yield* Effect.flip(TcpClient.connect(`127.0.0.1:${port}`, { happyEyeballs: "soon" as never }))
      assert.strictEqual(bad._tag, "InvalidArgument")
      yield* expectPoolIdle
    }).pipe(Effect.scoped, Effect.provide(resolvingTcp({ "nowhere.test": ["127.0.0.1", "::1", "127.0.0.2"] }))))
})
