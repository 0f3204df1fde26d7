/**
 * Bad input, fuzzed with fast-check: addresses (strings, objects, anything),
 * ports, deadlines and timeouts, lengths, buffers and chunk lists, socket
 * settings, storage, listen's backlog and pending, descriptors. Every value
 * is generated together with whether DESIGN.md (and the TypeScript types)
 * make it valid; then
 *
 *   - an invalid input fails with `InvalidArgument` (EINVAL): never a throw,
 *     never a defect, never a hang (each call is bounded by 3 s of real time);
 *   - a valid one is not rejected: it does what the call does (here: time out
 *     at deadline 0, connect to our own loopback server, receive a peer's FIN,
 *     send a few bytes, take a slot...).
 *
 * `null` for an option and NaN as a duration are checked apart, one by one
 * (both are invalid: the types say `T | undefined`, and Deadline.resolve
 * documents NaN as invalid), so that the properties go on checking the rest.
 * Names resolve through a static resolver that knows no name, and
 * connects with a generated address use deadline 0, so no packet leaves
 * loopback and nothing is looked up in DNS.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { NetAddress } from "effect/net"
import fc from "fast-check"
import { openSync, closeSync } from "node:fs"
import * as Net from "node:net"
import { TcpClient, TcpListener, TcpStorage } from "../../src/index.ts"
import type { TcpSocket } from "../../src/index.ts"
import { checkFdLeaks, expectPoolIdle, rawServer, resolvingTcp } from "../helpers.ts"
import { bad, either, good, optional, optionsOf, property, show, type V } from "./arbitraries.ts"
import { classify, type Outcome } from "./support.ts"

// ---------------------------------------------------------------- setup

/** A resolver that knows no name: no DNS traffic, whatever the fuzzer makes up. */
const FuzzTcp = resolvingTcp({}, { slots: 64, bufferSize: 4 * 1024 })
type Env = TcpClient.TcpClient | TcpStorage.TcpStorage

const ipv6 = (() => {
  const probe = Net.createServer()
  try {
    probe.listen(0, "::1")
    return true
  } catch {
    return false
  } finally {
    probe.close()
  }
})()

// ------------------------------------------------------- tagged values

/** Byte-ish values that are not Uint8Array: always invalid as a buffer. */
const notBytes = fc.constantFrom<unknown>(
  new ArrayBuffer(4),
  new DataView(new ArrayBuffer(4)),
  new Int8Array(4),
  new Uint16Array(2),
  new Uint8ClampedArray(4),
  [1, 2, 3],
  "abcd",
  null,
  undefined,
  4
)

/** A list of up to 4 tagged buffers (valid when each is), or something that is no list of buffers. */
const listOf = (item: fc.Arbitrary<V>): fc.Arbitrary<V> =>
  fc.oneof(
    fc.array(item, { maxLength: 4 }).map((vs) => ({ value: vs.map((v) => v.value), ok: vs.every((v) => v.ok) })),
    bad(fc.constantFrom<unknown>(null, undefined, "x", new Uint8Array(4), { length: 1, 0: new Uint8Array(1) }))
  )

// ------------------------------------------------------- the generators

const junk = fc.constantFrom<unknown>(true, false, {}, [], "x", Symbol.for("x"), () => 1, 7n)

/** Absolute deadlines: -1, 0 or a time in ms (finite, >= 0). */
const deadline = either(
  fc.oneof(
    fc.constantFrom(-1, 0, 1, 0.5),
    fc.double({ min: 0, max: 1e15, noNaN: true }),
    fc.integer({ min: 0, max: 2 ** 31 })
  ),
  fc.oneof(
    fc.constantFrom<unknown>(NaN, Infinity, -Infinity, -2, -1.5, -0.5, -1e-9, "0", "-1"),
    fc.double({ max: -1.000001, noNaN: true }),
    fc.integer({ min: -(2 ** 31), max: -2 }),
    junk.filter((u) => typeof u !== "number")
  )
)

const durationGood = fc.oneof(
  fc.integer({ min: 0, max: 10_000 }),
  fc.double({ min: 0, max: 1e7, noNaN: true, noDefaultInfinity: true }),
  fc.integer({ min: 0, max: 5000 }).map((n) => `${n} millis`),
  fc.integer({ min: 0, max: 60 }).map((n) => `${n} seconds`),
  fc.constantFrom<Duration.Input>(
    "1.5 seconds",
    "2 minutes",
    "1 day",
    "250 micros",
    5_000_000n,
    [1, 500],
    Duration.millis(30),
    { seconds: 2, milliseconds: 5 },
    {}
  )
)
const durationBad = fc.oneof(
  fc.integer({ min: -10_000, max: -1 }),
  // Negative at nanosecond resolution (durations are kept in nanoseconds).
  fc.double({ max: -1e-6, noNaN: true }),
  fc.constantFrom<unknown>(
    -Infinity,
    "-5 millis",
    "5millis",
    " 5 millis",
    "5 parsecs",
    "",
    "soon",
    "-Infinity",
    -1n,
    [1],
    [1, 2, 3],
    ["1", "2"],
    [-1, 0],
    Duration.millis(-5),
    { seconds: -1 },
    true
  )
)
/** Relative timeouts: any non-negative duration, infinite ones included. */
const timeout = either(fc.oneof(durationGood, fc.constantFrom<Duration.Input>(Infinity, "Infinity")), durationBad)
/** closeTimeout: finite, non-negative. */
const closeTimeout = either(durationGood, fc.oneof(durationBad, fc.constantFrom<unknown>(Infinity, "Infinity")))
/** keepAlive: a boolean or a finite non-negative delay. */
const keepAlive = either(
  fc.oneof(fc.boolean(), durationGood),
  fc.oneof(durationBad.filter((u) => u !== true), fc.constantFrom<unknown>(Infinity, "Infinity"))
)
const noDelay = either(fc.boolean(), fc.constantFrom<unknown>(0, 1, "true", "false", {}, []))
const family = either(fc.constantFrom("ipv4", "any"), fc.constantFrom<unknown>("IPv4", "v4", "inet", "", 4, 6, true, {}))
/** A caller-supplied slot: not a live `TcpStorage.Slot`. */
const storage = bad(fc.constantFrom<unknown>({}, { id: 0, bufferSize: 1024 }, "slot", 1, []))

const deadlineOptions = optionsOf({ deadline: optional(deadline), timeout: optional(timeout) })

const socketSettings = {
  deadline: optional(deadline),
  timeout: optional(timeout),
  noDelay: optional(noDelay),
  keepAlive: optional(keepAlive),
  closeTimeout: optional(closeTimeout),
  storage: optional(storage)
}
const connectOptions = optionsOf({ ...socketSettings, family: optional(family) })
const acceptOptions = optionsOf(socketSettings)

// Addresses (for connect: port 0 is invalid).
const octet = fc.integer({ min: 0, max: 255 })
const loopback4 = fc.tuple(octet, octet, octet).map(([a, b, c]) => `127.${a}.${b}.${c}`)
const validPort = fc.integer({ min: 1, max: 65535 })
const badPortNumber = fc.oneof(
  fc.constantFrom<unknown>(0, -0, 65536, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53),
  fc.integer({ min: 65536, max: 2 ** 31 }),
  fc.integer({ min: -(2 ** 31), max: -1 }),
  fc.double({ min: 0.0001, max: 65535, noNaN: true }).filter((n) => !Number.isInteger(n))
)
const badPortText = fc.oneof(
  fc.constantFrom("0", "080", "+80", " 80", "80 ", "8 0", "65536", "99999", "1e3", "0x50", "", "-1", "80.0", "٣"),
  fc.integer({ min: 65536, max: 2 ** 31 }).map(String)
)
/** Invalid hosts, in both the string and the object form. */
const badHost = fc.constantFrom(
  "",
  " ",
  "a b",
  "a..b",
  "-a.example",
  "a-.example",
  "a/b",
  "a:b",
  "127.0.0.1 ",
  "256.256.256.256",
  "1.2.3.4.5",
  "1.2.3",
  "::g",
  "12345::",
  "%",
  `${"x".repeat(64)}.example`,
  "a.123"
)
const validHostText = fc.oneof(loopback4, fc.domain(), fc.constantFrom("localhost", "127.0.0.1"))

const address: fc.Arbitrary<V> = fc.oneof(
  // valid
  good(fc.tuple(validHostText, validPort).map(([h, p]) => `${h}:${p}`)),
  good(validPort.map((p) => `[::1]:${p}`)),
  good(fc.tuple(fc.oneof(validHostText, fc.constant("::1")), validPort).map(([host, port]) => ({ host, port }))),
  good(fc.tuple(loopback4, validPort).map(([h, p]) => NetAddress.inetAddressFromIpStringUnsafe(h, p))),
  // invalid
  bad(fc.tuple(validHostText, badPortText).map(([h, p]) => `${h}:${p}`)),
  bad(fc.tuple(validHostText, badPortNumber).map(([host, port]) => ({ host, port }))),
  bad(fc.tuple(badHost, validPort).map(([h, p]) => `${h}:${p}`)),
  bad(fc.tuple(badHost, validPort).map(([host, port]) => ({ host, port }))),
  bad(fc.tuple(loopback4, fc.constant(0)).map(([h, p]) => NetAddress.inetAddressFromIpStringUnsafe(h, p))),
  bad(validPort.map((p) => `::1:${p}`)),
  bad(validPort.map((p) => `[127.0.0.1]:${p}`)),
  bad(fc.constantFrom<unknown>(
    "127.0.0.1",
    "127.0.0.1:",
    ":80",
    "localhost",
    "",
    null,
    undefined,
    80,
    true,
    [],
    {},
    ["127.0.0.1", 80],
    { host: "127.0.0.1" },
    { port: 80 },
    { host: 127, port: 80 },
    { host: "127.0.0.1", port: "80" }
  ))
)

// -------------------------------------------------------------- judging

/** Runs the call `make` builds (a throw counts), bounded by 3 s of real time. */
const attempt = <A, E, R>(make: () => Effect.Effect<A, E, R>): Effect.Effect<Outcome, never, R> =>
  Effect.suspend(make).pipe(
    Effect.timeoutOrElse({ duration: "3 seconds", orElse: () => Effect.die(new Error("hung for 3 s")) }),
    Effect.exit,
    Effect.map(classify)
  )

/**
 * Invalid input: InvalidArgument with errno EINVAL. Valid input: success or
 * one of `allowed` (never InvalidArgument). Never a defect.
 */
const judge = (label: string, outcome: Outcome, ok: boolean, allowed: ReadonlyArray<string>) => {
  if (outcome.kind === "defect") return assert.fail(`${label}: defect (or a throw / a hang)\n${outcome.cause}`)
  if (outcome.kind === "interrupted") return assert.fail(`${label}: interrupted`)
  if (!ok) {
    assert.strictEqual(outcome.kind, "error", `${label}: invalid input accepted`)
    if (outcome.kind === "error") {
      assert.strictEqual(outcome.tag, "InvalidArgument", `${label}: ${String(outcome.error)}`)
      assert.strictEqual((outcome.error as { errno?: unknown }).errno, "EINVAL", label)
    }
    return
  }
  if (outcome.kind === "error") assert.include(allowed, outcome.tag, `${label}: valid input: ${String(outcome.error)}`)
}

const fuzz = <A, E>(body: Effect.Effect<A, E, Env | Scope.Scope>) =>
  Effect.gen(function*() {
    yield* Effect.scoped(body)
    yield* expectPoolIdle
  }).pipe(Effect.provide(FuzzTcp))

/** A node:net server that closes every connection at once. */
const slammer = rawServer((socket) => {
  socket.on("error", () => {})
  socket.destroy()
})

/**
 * Our socket connected to a node:net peer that has already finished (FIN)
 * and goes on reading: receives end at once (PeerClosed), small sends succeed.
 */
const finishedPeer = Effect.gen(function*() {
  const server = yield* rawServer((socket) => {
    socket.on("error", () => {})
    socket.resume()
    socket.end()
  })
  const socket = yield* TcpClient.connect(server.address, { timeout: "3 seconds" })
  yield* socket.recv(1, { timeout: "3 seconds" }).pipe(Effect.ignore) // the FIN is here
  return socket
})

// ---------------------------------------------------------------- tests

describe("faults: bad input (fast-check)", () => {
  checkFdLeaks()

  it.live("connect: generated addresses (deadline 0) are InvalidArgument exactly when invalid", () =>
    fuzz(property(address, 400, (a) =>
      Effect.gen(function*() {
        const outcome = yield* attempt(() => TcpClient.connect(a.value as TcpClient.TcpAddress, { deadline: 0 }))
        // Valid: a handshake always waits, so deadline 0 is TimedOut.
        judge(`connect(${show(a.value)})`, outcome, a.ok, a.ok ? ["TimedOut"] : [])
      })
    )), 60_000)

  it.live("connect: anything at all as the address never throws, dies or hangs", () =>
    fuzz(property(fc.anything({ withBigInt: true, withMap: true, withSet: true, withTypedArray: true }), 300, (a) =>
      Effect.gen(function*() {
        const outcome = yield* attempt(() => TcpClient.connect(a as TcpClient.TcpAddress, { deadline: 0 }))
        if (outcome.kind === "defect") assert.fail(`connect(${show(a)}): ${outcome.cause}`)
        if (outcome.kind === "error") assert.include(["InvalidArgument", "TimedOut"], outcome.tag, show(a))
      })
    )), 60_000)

  it.live("connect: generated options to our loopback server", () =>
    fuzz(Effect.gen(function*() {
      const server = yield* slammer
      yield* property(fc.tuple(connectOptions, fc.boolean()), 300, ([o, liveSlot]) =>
        Effect.gen(function*() {
          // A live slot of our own is valid storage.
          const options = liveSlot && !("storage" in o.value)
            ? { ...o.value, storage: yield* TcpStorage.acquire() }
            : o.value
          const outcome = yield* attempt(() => Effect.asVoid(TcpClient.connect(server.address, options as TcpClient.ConnectOptions)))
          judge(`connect(${show(o.value)})`, outcome, o.ok, ["TimedOut"])
        }))
    })), 60_000)

  it.live("recv, recvInto, recvv: lengths, buffers and deadlines", () =>
    fuzz(Effect.gen(function*() {
      const socket: TcpSocket.TcpSocket = yield* finishedPeer
      const length = either(
        fc.oneof(fc.integer({ min: 0, max: 4 * 1024 * 1024 }), fc.constantFrom(0, 1, 4096, 4097)),
        fc.oneof(
          fc.integer({ min: -(2 ** 31), max: -1 }),
          fc.double({ noNaN: false }).filter((n) => !Number.isSafeInteger(n) || n < 0),
          fc.constantFrom<unknown>(2 ** 53, Number.MAX_VALUE, "4", null, undefined, 4n, {}, [4])
        )
      )
      const buffer = either(
        fc.oneof(
          fc.integer({ min: 0, max: 64 }).map((n) => new Uint8Array(n)),
          fc.integer({ min: 0, max: 64 }).map((n) => Buffer.alloc(n))
        ),
        notBytes
      )
      const buffers = listOf(buffer)
      yield* property(fc.tuple(length, buffer, buffers, deadlineOptions), 300, ([n, b, bs, o]) =>
        Effect.gen(function*() {
          // Valid: the peer has finished, so a receive of anything is PeerClosed at once.
          const size = (u: unknown) => (u as { length: number }).length
          const r1 = yield* attempt(() => socket.recv(n.value as number, o.value))
          judge(`recv(${show(n.value)}, ${show(o.value)})`, r1, n.ok && o.ok, n.value === 0 ? [] : ["PeerClosed"])
          const r2 = yield* attempt(() => socket.recvInto(b.value as Uint8Array, o.value))
          judge(`recvInto(${show(b.value)}, ${show(o.value)})`, r2, b.ok && o.ok, b.ok && size(b.value) === 0 ? [] : ["PeerClosed"])
          const empty = bs.ok && (bs.value as Array<Uint8Array>).every((x) => x.length === 0)
          const r3 = yield* attempt(() => socket.recvv(bs.value as Array<Uint8Array>, o.value))
          judge(`recvv(${show(bs.value)}, ${show(o.value)})`, r3, bs.ok && o.ok, empty ? [] : ["PeerClosed"])
        }))
    })), 60_000)

  it.live("recvUntil: delimiters, max and deadlines", () =>
    fuzz(Effect.gen(function*() {
      const socket: TcpSocket.TcpSocket = yield* finishedPeer
      const delimiter = either(
        fc.oneof(fc.string({ minLength: 1, maxLength: 8 }), fc.uint8Array({ minLength: 1, maxLength: 8 })),
        fc.constantFrom<unknown>("", new Uint8Array(0), null, undefined, 10, {}, ["\n"], 10n)
      )
      const max = either(
        fc.oneof(fc.integer({ min: 1, max: 1024 * 1024 }), fc.constant(undefined)),
        fc.oneof(
          fc.integer({ min: -(2 ** 31), max: 0 }),
          fc.double({ noNaN: false }).filter((n) => !Number.isSafeInteger(n) || n < 1),
          fc.constantFrom<unknown>("8", null, 8n, {}, 2 ** 53)
        )
      )
      yield* property(fc.tuple(delimiter, max, deadlineOptions), 300, ([d, m, o]) =>
        Effect.gen(function*() {
          // Valid: the peer has finished, so the receive is PeerClosed (with no bytes) at once.
          const options = m.value === undefined ? o.value : { ...(o.value as object), max: m.value }
          const r = yield* attempt(() => socket.recvUntil(d.value as string, options as { max?: number }))
          judge(`recvUntil(${show(d.value)}, ${show(options)})`, r, d.ok && m.ok && o.ok, ["PeerClosed"])
        }))
    })), 60_000)

  it.live("send, sendv: buffers, chunk lists and deadlines", () =>
    fuzz(Effect.gen(function*() {
      const socket: TcpSocket.TcpSocket = yield* finishedPeer
      const bytes = either(
        fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a))),
        notBytes
      )
      const chunks = listOf(bytes)
      yield* property(fc.tuple(bytes, chunks, deadlineOptions), 300, ([b, cs, o]) =>
        Effect.gen(function*() {
          // Valid: a few bytes to a peer that reads are taken at once, whatever the deadline.
          judge(`send(${show(b.value)}, ${show(o.value)})`, yield* attempt(() => socket.send(b.value as Uint8Array, o.value)), b.ok && o.ok, [])
          judge(
            `sendv(${show(cs.value)}, ${show(o.value)})`,
            yield* attempt(() => socket.sendv(cs.value as Array<Uint8Array>, o.value)),
            cs.ok && o.ok,
            []
          )
        }))
    })), 60_000)

  it.live("done and close: deadlines (a rejected call leaves the socket open)", () =>
    fuzz(property(fc.tuple(deadlineOptions, deadlineOptions), 60, ([d, c]) =>
      Effect.gen(function*() {
        const socket = yield* finishedPeer
        judge(`done(${show(d.value)})`, yield* attempt(() => socket.done(d.value)), d.ok, [])
        judge(`close(${show(c.value)})`, yield* attempt(() => socket.close(c.value)), c.ok, [])
        if (!c.ok) yield* socket.close({ timeout: "3 seconds" })
      })
    )), 60_000)

  it.live("accept: generated options, with a connection waiting", () =>
    fuzz(Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0", { pending: 8 })
      yield* property(fc.tuple(acceptOptions, fc.boolean()), 150, ([o, liveSlot]) =>
        Effect.gen(function*() {
          const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, { timeout: "3 seconds" })
          const options = liveSlot && !("storage" in o.value)
            ? { ...o.value, storage: yield* TcpStorage.acquire() }
            : o.value
          // Valid: the connection is there, so accept succeeds (or a past deadline's TimedOut).
          const outcome = yield* attempt(() => Effect.asVoid(listener.accept(options as TcpListener.AcceptOptions)))
          judge(`accept(${show(o.value)})`, outcome, o.ok, ["TimedOut"])
          if (outcome.kind !== "success") {
            // Take the connection this run left queued, so the next run finds its own.
            yield* Effect.asVoid(listener.accept({ timeout: "3 seconds" }))
          }
          yield* client.abort
        }))
    })), 60_000)

  it.live("listen: generated addresses, backlog and pending (valid ones listen on port 0)", () =>
    fuzz(Effect.gen(function*() {
      const listenAddress = fc.oneof(
        good(fc.constantFrom<unknown>("127.0.0.1:0", { host: "127.0.0.1", port: 0 }, ...(ipv6 ? ["[::1]:0", { host: "::1", port: 0 }] : []))),
        bad(fc.oneof(
          badPortText.filter((p) => p !== "0").map((p) => `127.0.0.1:${p}`),
          badPortNumber.filter((p) => p !== 0).map((port) => ({ host: "127.0.0.1", port })),
          badHost.map((h) => `${h}:0`),
          fc.constantFrom<unknown>("127.0.0.1", "::1:0", "[127.0.0.1]:0", null, 0, {}, { host: "127.0.0.1" })
        ))
      )
      const count = (min: number) =>
        either(
          fc.integer({ min, max: 1024 }),
          fc.constantFrom<unknown>(min - 1, -5, 1.5, NaN, Infinity, "5", 2 ** 53, {}, true)
        )
      const listenOptions = optionsOf({
        backlog: optional(count(1)),
        pending: optional(count(0))
      })
      yield* property(fc.tuple(listenAddress, listenOptions), 200, ([a, o]) =>
        Effect.gen(function*() {
          const outcome = yield* attempt(() => Effect.asVoid(TcpListener.listen(a.value as TcpClient.TcpAddress, o.value)))
          judge(`listen(${show(a.value)}, ${show(o.value)})`, outcome, a.ok && o.ok, [])
        }))
    })), 60_000)

  it.live("TcpStorage.acquire: deadlines", () =>
    fuzz(property(deadlineOptions, 200, (o) =>
      Effect.gen(function*() {
        // Valid: the pool has free slots, so a slot comes at once whatever the deadline.
        judge(`acquire(${show(o.value)})`, yield* attempt(() => Effect.asVoid(TcpStorage.acquire(o.value))), o.ok, [])
      })
    )), 60_000)

  it.live("fromFd: descriptors that are not a connected (or listening) TCP socket", () =>
    fuzz(Effect.gen(function*() {
      const devNull = yield* Effect.acquireRelease(Effect.sync(() => openSync("/dev/null", "r")), (fd) => Effect.sync(() => closeSync(fd)))
      const fd = bad(fc.oneof(
        fc.integer({ min: -(2 ** 31), max: -1 }),
        fc.double({ noNaN: false }).filter((n) => !Number.isSafeInteger(n)),
        fc.constantFrom<unknown>(devNull, 2 ** 53, "3", null, undefined, {}, 3n)
      ))
      yield* property(fd, 200, (f) =>
        Effect.gen(function*() {
          judge(`TcpClient.fromFd(${show(f.value)})`, yield* attempt(() => Effect.asVoid(TcpClient.fromFd(f.value as number))), false, [])
          judge(`TcpListener.fromFd(${show(f.value)})`, yield* attempt(() => Effect.asVoid(TcpListener.fromFd(f.value as number))), false, [])
        }))
    })), 60_000)

  it.live("recv of a valid but enormous length is a typed error or waits, never a defect", () =>
    fuzz(Effect.gen(function*() {
      const server = yield* rawServer((socket) => socket.on("error", () => {}))
      const socket = yield* TcpClient.connect(server.address, { timeout: "3 seconds" })
      // Lengths the library documents as valid (integers up to buffer.kMaxLength), most of which no
      // machine can allocate. With deadline 0 and nothing buffered: TimedOut, or an error value.
      const huge = fc.oneof(
        fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 40, 2 ** 50, Number.MAX_SAFE_INTEGER),
        fc.integer({ min: 41, max: 52 }).map((e) => 2 ** e + 1)
      )
      yield* property(huge, 20, (n) =>
        Effect.gen(function*() {
          const outcome = yield* attempt(() => socket.recv(n, { deadline: 0 }))
          if (outcome.kind === "defect") assert.fail(`recv(${n}): defect\n${outcome.cause}`)
          if (outcome.kind === "error") assert.include(["TimedOut", "InvalidArgument"], outcome.tag, `recv(${n})`)
        }))
    })), 60_000)

  /** Runs each labelled call; returns those that did not fail with InvalidArgument. */
  const notRejected = (calls: ReadonlyArray<readonly [string, Effect.Effect<unknown, unknown, Env | Scope.Scope>]>) =>
    Effect.gen(function*() {
      const accepted: Array<string> = []
      for (const [label, call] of calls) {
        const outcome = yield* attempt(() => Effect.scoped(call))
        if (outcome.kind === "defect") assert.fail(`${label}: ${outcome.cause}`)
        if (!(outcome.kind === "error" && outcome.tag === "InvalidArgument")) {
          accepted.push(`${label} → ${outcome.kind === "error" ? outcome.tag : outcome.kind}`)
        }
      }
      return accepted
    })

  it.live("NaN as a duration (timeout, keepAlive, closeTimeout) is InvalidArgument, as for deadlines", () =>
    fuzz(Effect.gen(function*() {
      const server = yield* slammer
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const socket = yield* finishedPeer
      const connect = (options: object) => Effect.asVoid(TcpClient.connect(server.address, { deadline: 0, ...options }))
      const accepted = yield* notRejected([
        ["connect({ deadline: NaN })", connect({ deadline: NaN })],
        ["connect({ timeout: NaN })", connect({ timeout: NaN })],
        ["connect({ keepAlive: NaN })", connect({ keepAlive: NaN })],
        ["connect({ closeTimeout: NaN })", connect({ closeTimeout: NaN })],
        ["recv(1, { timeout: NaN })", socket.recv(1, { timeout: NaN })],
        ["send(x, { timeout: NaN })", socket.send(new Uint8Array(1), { timeout: NaN })],
        ["acquire({ timeout: NaN })", Effect.asVoid(TcpStorage.acquire({ timeout: NaN }))],
        ["accept({ timeout: NaN })", Effect.asVoid(listener.accept({ timeout: NaN }))]
      ])
      assert.deepStrictEqual(accepted, [], `accepted instead of InvalidArgument:\n  ${accepted.join("\n  ")}`)
    })), 30_000)

  it.live("null for an option (typed T | undefined) is InvalidArgument for every option alike", () =>
    fuzz(Effect.gen(function*() {
      const server = yield* slammer
      const connect = (options: object) =>
        Effect.asVoid(TcpClient.connect(server.address, { deadline: 0, ...options } as TcpClient.ConnectOptions))
      const listen = (options: object) => Effect.asVoid(TcpListener.listen("127.0.0.1:0", options as TcpListener.ListenOptions))
      const accepted = yield* notRejected([
        ["connect({ deadline: null })", connect({ deadline: null })],
        ["connect({ timeout: null })", connect({ timeout: null })],
        ["connect({ noDelay: null })", connect({ noDelay: null })],
        ["connect({ keepAlive: null })", connect({ keepAlive: null })],
        ["connect({ closeTimeout: null })", connect({ closeTimeout: null })],
        ["connect({ family: null })", connect({ family: null })],
        ["connect({ storage: null })", connect({ storage: null })],
        ["listen({ backlog: null })", listen({ backlog: null })],
        ["listen({ pending: null })", listen({ pending: null })]
      ])
      assert.deepStrictEqual(accepted, [], `accepted instead of InvalidArgument:\n  ${accepted.join("\n  ")}`)
    })), 30_000)
})
