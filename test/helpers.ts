/**
 * Shared fixtures for the test suite: real sockets on loopback only.
 */
import { assert } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Result } from "effect"
import type { Fiber, Scope } from "effect"
import { AddressResolver, Dns } from "effect/net"
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { accessSync, constants, readdirSync } from "node:fs"
import * as Net from "node:net"
import { delimiter, join } from "node:path"
import { afterAll, beforeAll } from "vitest"
import { TcpClient, TcpListener, TcpNode, TcpSocket, TcpStorage, TcpTest } from "../src/index.ts"
import type { TcpError } from "../src/index.ts"
import { connectionOf } from "../src/internal/tcpSocket.ts"

/** A small pool, so exhaustion and reuse are easy to reach (its settings are valid: it never fails). */
export const TestTcp: Layer.Layer<TcpClient.TcpClient | TcpStorage.TcpStorage> = TcpNode.layerWith({
  slots: 32,
  bufferSize: 16 * 1024
}).pipe(Layer.orDie)

/**
 * The client on a pool of its own (8 slots of 16 KiB unless told), resolving
 * names from `hosts` only: nothing is looked up in DNS, and a name not in
 * `hosts` does not resolve. Provide it alone: layers are memoized, so a
 * `TcpClient.layer` built earlier in the same provide would keep its resolver.
 */
export const resolvingTcp = (
  hosts: Record<string, ReadonlyArray<string>>,
  pool: TcpStorage.Options = { slots: 8, bufferSize: 16 * 1024 }
): Layer.Layer<TcpClient.TcpClient | TcpStorage.TcpStorage> =>
  TcpClient.layer.pipe(
    Layer.provide(Layer.succeed(
      AddressResolver.AddressResolver,
      AddressResolver.make(Result.getOrThrow(Dns.makeStatic({ hosts })))
    )),
    Layer.provideMerge(TcpStorage.layer(pool).pipe(Layer.orDie))
  )

/** Open descriptors of this process. */
export const openFds = (): number => readdirSync("/proc/self/fd").length

// ------------------------------------------------- waiting without sleeping
//
// Tests wait for what they need (an event, a condition, a fiber reaching its
// wait), never for a length of time: a loaded machine only makes them slower.
// Every wait is bounded in count, and its timer is a plain Node timer, so it
// works the same under TestClock.

/** How many polls `eventually` makes before it fails the test (about 5 s on an idle machine). */
export const POLLS = 500

/**
 * Waits `millis` on a Node timer, whatever clock the fiber runs on: the
 * interval between two polls, never a synchronisation.
 */
const pause = (millis: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * Lets every ready fiber and Node callback run: `count` rounds of the event
 * loop (each one polls I/O once), no clock involved.
 *
 * @example
 * ```ts
 * const fiber = yield* Effect.forkChild(socket.recv(4))
 * yield* turns(10) // the fiber has reached its wait
 * ```
 */
export const turns = (count = 10): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    let left = count
    let handle: NodeJS.Immediate | undefined
    const next = (): void => {
      if (left-- <= 0) return resume(Effect.void)
      handle = setImmediate(next)
    }
    next()
    return Effect.sync(() => {
      if (handle !== undefined) clearImmediate(handle)
    })
  })

/**
 * Polls `condition` (a function or an effect) until it holds: first over a
 * few turns of the event loop, then every 10 ms, at most `polls` times in
 * all. Fails the test naming `what` if it never holds.
 *
 * @example
 * ```ts
 * yield* eventually(() => peer.bytesRead >= 4, "the peer got 4 bytes")
 * ```
 */
export const eventually = <E = never, R = never>(
  condition: (() => boolean) | Effect.Effect<boolean, E, R>,
  what: string,
  polls = POLLS
): Effect.Effect<void, E, R> =>
  Effect.flatMap(pollUntil(condition, polls), (held) =>
    held ? Effect.void : Effect.sync(() => assert.fail(`gave up waiting (${polls} polls) until ${what}`)))

/**
 * `eventually` without the assertion: whether `condition` held within
 * `polls` polls.
 *
 * @example
 * ```ts
 * const flushed = yield* pollUntil(() => peer.writableFinished, 100)
 * ```
 */
export const pollUntil = <E = never, R = never>(
  condition: (() => boolean) | Effect.Effect<boolean, E, R>,
  polls = POLLS
): Effect.Effect<boolean, E, R> =>
  Effect.gen(function*() {
    const check = typeof condition === "function" ? Effect.sync(condition) : condition
    for (let i = 0; i < polls; i++) {
      if (yield* check) return true
      yield* i < 10 ? turns(1) : pause(10)
    }
    return yield* check
  })

/**
 * Lets `fiber` run until it waits on something (a few turns of the event
 * loop, no clock), then asserts it has not finished: the call it runs is
 * waiting. Replaces "sleep 30 ms so it starts waiting".
 *
 * @example
 * ```ts
 * const fiber = yield* Effect.forkChild(socket.recv(4))
 * yield* expectWaiting(fiber, "recv(4) with nothing sent")
 * ```
 */
export const expectWaiting = <A, E>(fiber: Fiber.Fiber<A, E>, what: string): Effect.Effect<void> =>
  Effect.andThen(turns(10), Effect.sync(() => assert.isUndefined(fiber.pollUnsafe(), `${what}: it completed`)))

/**
 * Forks `effect` and returns its fiber once it waits (see `expectWaiting`).
 *
 * @example
 * ```ts
 * const reading = yield* forkWaiting(socket.recv(4), "recv(4)")
 * ```
 */
export const forkWaiting = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  what: string
): Effect.Effect<Fiber.Fiber<A, E>, never, R> =>
  Effect.tap(Effect.forkChild(effect), (fiber) => expectWaiting(fiber, what))

/** Waits until `fiber` has finished (polled, bounded), then returns its exit. */
export const awaitDone = <A, E>(fiber: Fiber.Fiber<A, E>, what: string): Effect.Effect<Exit.Exit<A, E>> =>
  Effect.gen(function*() {
    yield* eventually(() => fiber.pollUnsafe() !== undefined, what)
    const exit = fiber.pollUnsafe()
    return exit === undefined ? assert.fail(what) : exit
  })

/**
 * Bytes `socket`'s receives have taken out of it so far (the figure
 * `TcpMetrics` reports when the connection is released): how a test knows a
 * pending receive has consumed part of what it waits for.
 *
 * @example
 * ```ts
 * yield* eventually(() => bytesTaken(client) >= 16 * 1024, "the recv took the first 16 KiB")
 * ```
 */
export const bytesTaken = (socket: TcpSocket.TcpSocket): number => {
  const conn = connectionOf(socket)
  return conn === undefined ? assert.fail("bytesTaken: not one of the library's own sockets") : conn.bytesReceived
}

/**
 * Registers a file-level leak check: after every test of the file, the open
 * descriptors must be back to where they were before the first (polling for
 * handles Node closes asynchronously).
 */
export const checkFdLeaks = (): void => {
  let baseline = 0
  beforeAll(() => {
    baseline = openFds()
  })
  afterAll(async () => {
    for (let i = 0; i < POLLS && openFds() > baseline; i++) await new Promise((r) => setTimeout(r, 10))
    assert.isAtMost(openFds(), baseline, "descriptors leaked by this file")
  })
}

/**
 * Waits until the process has at most `count` descriptors open (polled,
 * bounded), then asserts it.
 */
export const fdsBackTo = (count: number, what = "descriptors leaked"): Effect.Effect<void> =>
  Effect.andThen(pollUntil(() => openFds() <= count), Effect.sync(() => assert.isAtMost(openFds(), count, what)))

/**
 * Waits (polled, bounded; any clock) until the pool stats satisfy
 * `predicate`, then returns them, whether it holds or not: the caller asserts.
 */
export const statsWhen = (
  predicate: (s: TcpStorage.Stats) => boolean
): Effect.Effect<TcpStorage.Stats, never, TcpStorage.TcpStorage> =>
  Effect.andThen(pollUntil(Effect.map(TcpStorage.stats, predicate)), TcpStorage.stats)

/**
 * Waits (polled, bounded; any clock) until the pool holds no slot and nobody
 * waits for one, then asserts it: every socket of the test was released.
 */
export const expectPoolIdle: Effect.Effect<void, never, TcpStorage.TcpStorage> = statsWhen(
  (s) => s.inUse === 0 && s.waiting === 0
).pipe(
  Effect.map((s) => {
    assert.strictEqual(s.inUse, 0, `slots still in use: ${JSON.stringify(s)}`)
    assert.strictEqual(s.waiting, 0, `callers still waiting: ${JSON.stringify(s)}`)
  })
)

type Tcp = TcpClient.TcpClient | TcpStorage.TcpStorage

/**
 * Runs `body` in its own scope on `layer` (the 16 KiB test pool by default),
 * then checks, while the layer is still alive, that every slot came back.
 */
export const withTcp = <A, E, LE = never>(
  body: Effect.Effect<A, E, Tcp | Scope.Scope>,
  layer?: Layer.Layer<Tcp, LE>
): Effect.Effect<A, E | LE> =>
  Effect.gen(function*() {
    const result = yield* Effect.scoped(body)
    yield* expectPoolIdle
    return result
  }).pipe(Effect.provide(layer ?? TestTcp))

/** Sends `text` and expects it echoed back (2 s for each direction). */
export const roundTrip = (socket: TcpSocket.TcpSocket, text: string) =>
  Effect.gen(function*() {
    yield* socket.send(new TextEncoder().encode(text), { timeout: "2 seconds" })
    const back = yield* socket.recv(text.length, { timeout: "2 seconds" })
    assert.strictEqual(new TextDecoder().decode(back), text)
  })

/** A plain node:net server on `host` (127.0.0.1 unless told), port 0, closed with the scope. */
export const rawServer = (
  onConnection: (socket: Net.Socket) => void,
  options: Net.ServerOpts = { allowHalfOpen: true },
  host = "127.0.0.1"
): Effect.Effect<{ readonly port: number; readonly address: string; readonly server: Net.Server }, never, Scope.Scope> => {
  const sockets = new Set<Net.Socket>()
  return Effect.acquireRelease(
    Effect.callback<Net.Server>((resume) => {
      const server = Net.createServer(options, (socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        onConnection(socket)
      })
      server.listen(0, host, () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        for (const socket of sockets) socket.destroy()
      })
  ).pipe(
    Effect.map((server) => {
      const bound = server.address() as Net.AddressInfo
      const literal = Net.isIPv6(host) ? `[${host}]` : host
      return { port: bound.port, address: `${literal}:${bound.port}`, server }
    })
  )
}

/**
 * A node:net echo server on `host` (127.0.0.1 unless told): each peer echoes
 * what it gets and finishes when the client does. `peers` lists every
 * accepted socket, in order.
 */
export const echoServer = (
  host?: string
): Effect.Effect<
  {
    readonly port: number
    readonly address: string
    readonly server: Net.Server
    readonly peers: ReadonlyArray<Net.Socket>
  },
  never,
  Scope.Scope
> =>
  Effect.suspend(() => {
    const peers: Array<Net.Socket> = []
    return rawServer((socket) => {
      peers.push(socket)
      socket.on("error", () => {})
      socket.on("data", (chunk: Buffer) => socket.write(chunk))
      socket.on("end", () => socket.end())
    }, undefined, host).pipe(Effect.map((bound) => ({ ...bound, peers })))
  })

/** A plain node:net client connection to 127.0.0.1:`port`, destroyed with the scope. */
export const rawClient = (port: number): Effect.Effect<Net.Socket, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Net.Socket, Error>((resume) => {
      const socket = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
      socket.once("connect", () => resume(Effect.succeed(socket)))
      socket.once("error", (e) => resume(Effect.fail(e)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )

/** Everything a node:net socket receives until the peer's FIN. */
export const readAll = (socket: Net.Socket): Effect.Effect<Buffer, Error> =>
  Effect.callback<Buffer, Error>((resume) => {
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.once("end", () => resume(Effect.succeed(Buffer.concat(chunks))))
    socket.once("error", (e) => resume(Effect.fail(e)))
  })

/**
 * Writes `message` from a plain node:net client and waits for as many bytes
 * back (as text); stops listening when interrupted.
 */
export const plainExchange = (client: Net.Socket, message: string): Effect.Effect<string> =>
  Effect.callback<string>((resume) => {
    let got = ""
    const onData = (chunk: Buffer) => {
      got += chunk.toString()
      if (got.length >= message.length) {
        client.off("data", onData)
        resume(Effect.succeed(got))
      }
    }
    client.on("data", onData)
    client.write(message)
    return Effect.sync(() => client.off("data", onData))
  })

/** A `TcpListener.serve` handler: echoes 4-byte messages until the peer finishes (each wait bounded by 10 s). */
export const echo4 = (socket: TcpSocket.TcpSocket): Effect.Effect<void, TcpError.SendError | TcpError.RecvError> =>
  socket.recv(4, { timeout: "10 seconds" }).pipe(
    Effect.flatMap((bytes) => socket.send(bytes, { timeout: "10 seconds" })),
    Effect.forever,
    Effect.catchTag("PeerClosed", () => Effect.void)
  )

/** A loopback port nothing listens on (bound, then released). */
export const closedPort: Effect.Effect<number> = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * A listener whose kernel backlog is full: a child process listens with
 * backlog 1 and stops itself (SIGSTOP) before accepting anything, then the
 * backlog is filled with plain connections. A connect to it waits for a
 * handshake that never completes. The child is killed with the scope.
 */
export const fullBacklog: Effect.Effect<{ readonly port: number; readonly address: string }, Error, Scope.Scope> =
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, [
          "-e",
          `const s = require("node:net").createServer();
           s.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () => {
             process.stdout.write(String(s.address().port) + "\\n");
             process.kill(process.pid, "SIGSTOP");
           });`
        ], { stdio: ["ignore", "pipe", "inherit"] })
      ),
      (child) => Effect.sync(() => child.kill("SIGKILL"))
    )
    const port = yield* Effect.callback<number, Error>((resume) => {
      child.stdout.once("data", (data: Buffer) => resume(Effect.succeed(Number(data.toString().trim()))))
      child.once("error", (e) => resume(Effect.fail(e)))
    })
    // Fill the accept queue (backlog + 1 on Linux) and then some: connects
    // beyond it do not complete. The fillers are destroyed with the scope.
    const fillers: Array<Net.Socket> = []
    let connected = 0
    yield* Effect.addFinalizer(() => Effect.sync(() => fillers.forEach((s) => s.destroy())))
    for (let i = 0; i < 4; i++) {
      const socket = Net.connect({ port, host: "127.0.0.1" })
      socket.on("error", () => {})
      socket.once("connect", () => connected++)
      fillers.push(socket)
    }
    // Once two handshakes completed the queue is full: later SYNs are dropped.
    yield* eventually(() => connected >= 2, "two fillers took the accept queue of the stopped listener")
    return { port, address: `127.0.0.1:${port}` }
  })

/**
 * How many TLS handshakes `listener` has counted as failed, as its
 * `toJSON()` shows them; fails the test if it shows none (a listener
 * without `tls`).
 *
 * @example
 * ```ts
 * yield* eventually(() => handshakesFailed(listener) >= 1, "the failed handshake was counted")
 * ```
 */
export const handshakesFailed = (listener: TcpListener.TcpListener<unknown>): number => {
  const shown: unknown = listener.toJSON()
  const count = typeof shown === "object" && shown !== null && "handshakesFailed" in shown
    ? shown.handshakesFailed
    : undefined
  return typeof count === "number" ? count : assert.fail(`toJSON() shows no handshakesFailed: ${JSON.stringify(shown)}`)
}

/**
 * Runs the effect `make` builds (a throw while building it counts too) and
 * asserts it failed with one of `tags` as a typed error: not a success, not
 * a defect, not an interruption. Returns the error.
 */
export const failsWith = <A, E extends { readonly _tag: string }, R>(
  make: () => Effect.Effect<A, E, R>,
  tags: string | ReadonlyArray<string>,
  label = ""
): Effect.Effect<E, never, R> =>
  Effect.gen(function*() {
    const wanted = typeof tags === "string" ? [tags] : tags
    const exit = yield* Effect.exit(Effect.suspend(make))
    if (Exit.isSuccess(exit)) return assert.fail(`${label}: expected ${wanted.join("|")}, got success`)
    const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
    if (failure === undefined || failure._tag !== "Fail" || Cause.hasDies(exit.cause)) {
      return assert.fail(`${label}: expected ${wanted.join("|")}, got ${Cause.pretty(exit.cause)}`)
    }
    assert.include(wanted, failure.error._tag, `${label}: ${String(failure.error)}`)
    return failure.error
  })

/**
 * Where the executable `program` is on PATH, or undefined: how tests decide
 * to skip what needs a program nobody here wrote.
 *
 * @example
 * ```ts
 * it.live.skipIf(onPath("python3") === undefined)("…", () => …)
 * ```
 */
export const onPath = (program: string): string | undefined =>
  (process.env.PATH ?? "").split(delimiter).filter((dir) => dir !== "").map((dir) => join(dir, program))
    .find((candidate) => {
      try {
        accessSync(candidate, constants.X_OK)
        return true
      } catch {
        return false
      }
    })

/**
 * `program` on PATH, or undefined; when missing, prints why the tests of
 * `suite` (e.g. "interop/memcached") are skipped, with `hint` saying how to
 * get it.
 *
 * @example
 * ```ts
 * const memcached = findOnPath("memcached", "interop/memcached", "install it, e.g. apt-get install memcached")
 * it.live.skipIf(memcached === undefined)("…", () => …)
 * ```
 */
export const findOnPath = (program: string, suite: string, hint: string): string | undefined => {
  const found = onPath(program)
  if (found === undefined) console.log(`[${suite}] skipping: ${program} is not on PATH (${hint})`)
  return found
}

export interface ProcessResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs a command to completion, collecting its output; killed (SIGKILL) after
 * `timeoutMs` or when the calling fiber is interrupted.
 */
export const runProcess = (
  command: string,
  args: ReadonlyArray<string>,
  timeoutMs: number
): Effect.Effect<ProcessResult, Error> =>
  Effect.callback<ProcessResult, Error>((resume) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString()
    })
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString()
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.once("error", (e) => {
      clearTimeout(timer)
      resume(Effect.fail(e))
    })
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code, signal, stdout, stderr }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      child.kill("SIGKILL")
    })
  })

// ------------------------------------------------ one program, two layers

/** What the two-layer suites run on: a client and a pool, from either layer. */
export type BothLayers = TcpClient.TcpClient | TcpStorage.TcpStorage

/**
 * The Node layer (loopback sockets) and the in-memory one, with the same
 * pool settings, for suites that run one program under both.
 */
export const bothLayers = (
  pool: TcpStorage.Options = { slots: 64, bufferSize: 16 * 1024 }
): ReadonlyArray<readonly [string, Layer.Layer<BothLayers>]> => [
  ["loopback", Layer.orDie(TcpNode.layerWith(pool))],
  ["memory", Layer.orDie(TcpTest.layerWith(pool))]
]

/** A listener on a free loopback port (in memory under `TcpTest`), a client connected to it, and the server's end. */
export const loopbackPair = Effect.gen(function*() {
  const listener = yield* TcpListener.listen("127.0.0.1:0")
  const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, { timeout: "10 seconds" })
  const server = yield* listener.accept({ timeout: "10 seconds" })
  return { listener, client, server }
})

/** Runs `body` in its own scope on `layer`, then checks every slot came back. */
export const onLayer = <A, E>(layer: Layer.Layer<BothLayers>, body: Effect.Effect<A, E, BothLayers | Scope.Scope>) =>
  Effect.gen(function*() {
    const result = yield* Effect.scoped(body)
    yield* expectPoolIdle
    return result
  }).pipe(Effect.provide(layer))

/** The SHA-256 of `bytes`, in hex: compares large payloads with a short message when they differ. */
export const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/** UTF-8 bytes of `s`, and back. */
export const text = (s: string): Uint8Array => new TextEncoder().encode(s)
export const str = (b: Uint8Array): string => new TextDecoder().decode(b)

/** `n` printable bytes whose every position says where it is, for checking frames whole. */
export const pattern = (n: number, seed: number): Uint8Array => {
  const bytes = new Uint8Array(n)
  for (let i = 0; i < n; i++) bytes[i] = 0x20 + ((i * 7 + seed) % 90)
  return bytes
}
