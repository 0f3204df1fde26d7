/**
 * Printing never shows a slot's bytes. Slots are reused without clearing, so
 * a socket, listener, slot or pool printed with util.inspect (even with
 * `depth: Infinity, showHidden: true`), JSON.stringify, String, Effect's
 * Formatter or an Effect logger (the default one writing to the console,
 * and the simple, logfmt, JSON and structured ones) shows addresses, state
 * and sizes only: a few hundred bytes, and never what connection A received
 * when connection B runs on A's slot. In-memory sockets (TcpTest) print the
 * same way, whatever bytes are in flight.
 */
import { assert, describe, it } from "@effect/vitest"
import { Console, Effect, Fiber, Formatter, Inspectable, Logger } from "effect"
import { randomBytes } from "node:crypto"
import * as Net from "node:net"
import * as Util from "node:util"
import { TcpClient, TcpListener, TcpNode, TcpStorage, TcpTest } from "../src/index.ts"
import { checkFdLeaks, eventually, rawServer } from "./helpers.ts"

const T = { timeout: "3 seconds" } as const
/** What a printed object may take: addresses, state and sizes fit in far less. */
const MAX = 1024

/** A secret nobody could mistake: printable, and random so no other text contains it. */
const makeSecret = () => Buffer.from(`TOP-SECRET-${randomBytes(12).toString("hex")}`)

/** The forms a printed buffer takes: text, hex (Buffer's inspect, spaced or not), decimal lists (arrays, JSON, Uint8Array). */
const forms = (secret: Buffer): ReadonlyArray<string> => {
  const head = [...secret.subarray(0, 8)]
  return [
    secret.toString("latin1"),
    secret.subarray(0, 8).toString("latin1"),
    secret.toString("hex"),
    head.map((b) => b.toString(16).padStart(2, "0")).join(" "),
    head.join(","),
    head.join(", "),
    head.map((b, i) => `"${i}":${b}`).join(","),
    secret.toString("base64").slice(0, 12)
  ]
}

const attempt = (render: () => string): string => {
  try {
    return render()
  } catch (error) {
    return `threw: ${String(error)}`
  }
}

/** Every way the object may get printed. */
const renderings = (u: unknown): Record<string, string> => ({
  "util.inspect": attempt(() => Util.inspect(u)),
  "util.inspect deep": attempt(() =>
    Util.inspect(u, { depth: Infinity, showHidden: true, maxArrayLength: Infinity, maxStringLength: Infinity })
  ),
  "JSON.stringify": attempt(() => JSON.stringify(u)),
  "String": attempt(() => String(u)),
  "Formatter.format": attempt(() => Formatter.format(u)),
  "Formatter.formatJson": attempt(() => Formatter.formatJson(u)),
  "Inspectable.toStringUnknown": attempt(() => Inspectable.toStringUnknown(u))
})

/** Asserts that no rendering of `u` shows the secret or is long. */
const expectDiscreet = (label: string, u: unknown, secret: Buffer) => {
  for (const [how, text] of Object.entries(renderings(u))) {
    assert.isFalse(text.startsWith("threw"), `${label} ${how}: ${text}`)
    assert.isBelow(text.length, MAX, `${label} ${how}: ${text.length} characters: ${text.slice(0, 300)}`)
    for (const form of forms(secret)) {
      assert.notInclude(text, form, `${label} ${how} shows the secret: ${text.slice(0, 300)}`)
    }
  }
}

/**
 * Runs `Effect.log(...message)` through the default logger (writing to a
 * console that records) and through a logger that formats each message the
 * ways Effect's loggers do; returns every line written.
 */
const logged = (...message: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<string>> =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const record = (...args: ReadonlyArray<unknown>) => {
      lines.push(Util.format(...args))
    }
    const formats = Logger.make((options) => {
      lines.push(Logger.formatSimple.log(options))
      lines.push(Logger.formatLogFmt.log(options))
      lines.push(Logger.formatJson.log(options))
      lines.push(JSON.stringify(Logger.formatStructured.log(options)))
    })
    const console: Console.Console = { ...globalThis.console, log: record, error: record, info: record, warn: record }
    yield* Effect.log(...message).pipe(
      Effect.provide(Logger.layer([Logger.defaultLogger, formats])),
      Effect.provideService(Console.Console, console)
    )
    return lines
  })

const expectDiscreetLogs = (label: string, lines: ReadonlyArray<string>, count: number, secret: Buffer) => {
  assert.strictEqual(lines.length, 5, `${label}: the default logger and four formats each wrote a line`)
  for (const line of lines) {
    assert.isBelow(line.length, count * MAX, `${label}: ${line.length} characters: ${line.slice(0, 300)}`)
    for (const form of forms(secret)) assert.notInclude(line, form, `${label} shows the secret: ${line.slice(0, 300)}`)
  }
}

/** One slot of 4 KiB, so the second connection runs on the first one's slot. */
const OneSlot = TcpNode.layerWith({ slots: 1, bufferSize: 4096 })

describe("printing sockets, listeners, slots and pools", () => {
  checkFdLeaks()

  it.live("a connection on a reused slot prints none of the bytes the previous one received", () =>
    Effect.gen(function*() {
      const secret = makeSecret()
      let connections = 0
      // The first connection is sent the secret; later ones nothing.
      const server = yield* rawServer((socket) => {
        socket.on("error", () => {})
        if (connections++ === 0) socket.write(secret)
        socket.on("end", () => socket.end())
      })
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const storage = yield* TcpStorage.TcpStorage

      const a = yield* TcpClient.connect(server.address, T)
      const received = yield* a.recv(secret.length, T)
      assert.deepStrictEqual(Buffer.from(received), secret)
      // The socket that received it does not print it either.
      expectDiscreet("socket A", a, secret)
      yield* a.close(T)

      // B on the same slot: the slot still holds A's bytes.
      const slot = yield* TcpStorage.acquire(T)
      assert.strictEqual(slot.id, 0)
      assert.deepStrictEqual((yield* TcpStorage.stats).slots, 1, "one slot in all: B reuses A's")
      expectDiscreet("slot", slot, secret)
      const b = yield* TcpClient.connect(server.address, { ...T, storage: slot })

      for (const [label, u] of [["socket B", b], ["slot", slot], ["listener", listener], ["pool", storage]] as const) {
        expectDiscreet(label, u, secret)
      }
      expectDiscreetLogs("Effect.log socket", yield* logged("socket", b), 1, secret)
      expectDiscreetLogs("Effect.log all", yield* logged("all", b, slot, listener, storage), 4, secret)

      // What they do print: addresses, state and sizes.
      const json = JSON.parse(JSON.stringify(b)) as Record<string, unknown>
      assert.strictEqual(json.remoteAddress, server.address)
      assert.strictEqual(json.state, "open")
      assert.deepInclude(json, { slot: { id: 0, bufferSize: 4096 } })
      assert.deepInclude(JSON.parse(JSON.stringify(storage)) as object, { slots: 1, inUse: 1, bufferSize: 4096 })
      assert.deepInclude(JSON.parse(JSON.stringify(listener)) as object, { address: `127.0.0.1:${listener.port}` })
      assert.deepInclude(JSON.parse(JSON.stringify(slot)) as object, { id: 0, bufferSize: 4096 })
      assert.include(String(b), server.address)
      assert.include(Util.inspect(b), server.address)

      yield* b.close(T)
      // Closed, and its slot back in the pool: still nothing.
      expectDiscreet("closed socket B", b, secret)
      assert.strictEqual((JSON.parse(JSON.stringify(b)) as Record<string, unknown>).state, "closed")
    }).pipe(Effect.scoped, Effect.provide(OneSlot)))

  it.live("an accepted connection on a reused slot prints none of the bytes the previous one received", () =>
    Effect.gen(function*() {
      const secret = makeSecret()
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const dial = Effect.acquireRelease(
        Effect.sync(() => {
          const socket = Net.connect({ port: listener.port, host: "127.0.0.1" })
          socket.on("error", () => {})
          return socket
        }),
        (socket) => Effect.sync(() => socket.destroy())
      )

      yield* Effect.scoped(Effect.gen(function*() {
        const peer = yield* dial
        peer.write(secret)
        const a = yield* listener.accept(T)
        assert.deepStrictEqual(Buffer.from(yield* a.recv(secret.length, T)), secret)
        expectDiscreet("accepted A", a, secret)
        yield* a.abort
      }))
      yield* eventually(Effect.map(TcpStorage.stats, (s) => s.inUse === 0), "A's slot is back")

      const peer = yield* dial
      const b = yield* listener.accept(T)
      assert.strictEqual((yield* TcpStorage.stats).slots, 1, "B reuses A's slot")
      expectDiscreet("accepted B", b, secret)
      expectDiscreet("listener", listener, secret)
      expectDiscreet("pool", yield* TcpStorage.TcpStorage, secret)
      expectDiscreetLogs("Effect.log accepted", yield* logged("accepted", b, listener), 2, secret)
      peer.destroy()
    }).pipe(Effect.scoped, Effect.provide(OneSlot)))

  it.live("a pool's lingering closes print as a count", () =>
    Effect.gen(function*() {
      const secret = makeSecret()
      // A peer that sends the secret and never finishes: the scope's close lingers in the background.
      const server = yield* rawServer((socket) => {
        socket.on("error", () => {})
        socket.write(secret)
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* TcpClient.connect(server.address, { ...T, closeTimeout: "3 seconds" })
        yield* a.recv(secret.length, T)
      }))
      const storage = yield* TcpStorage.TcpStorage
      expectDiscreet("pool with a lingering close", storage, secret)
      assert.deepInclude(JSON.parse(JSON.stringify(storage)) as object, { lingering: 1 })
    }).pipe(Effect.scoped, Effect.provide(OneSlot)))

  it.effect("in-memory sockets, peers and listeners print no bytes in flight", () =>
    Effect.gen(function*() {
      const secret = makeSecret()
      const server = yield* TcpTest.listen("127.0.0.1:7000")
      const connecting = yield* Effect.forkChild(TcpClient.connect("127.0.0.1:7000"))
      const peer = yield* server.accept()
      const socket = yield* Fiber.join(connecting)
      // Both directions hold the secret, unread.
      yield* peer.send(secret)
      yield* socket.send(secret)
      for (const [label, u] of [["socket", socket], ["peer", peer], ["listener", server]] as const) {
        expectDiscreet(`in-memory ${label}`, u, secret)
      }
      expectDiscreet("in-memory pool", yield* TcpStorage.TcpStorage, secret)
      expectDiscreetLogs("Effect.log in memory", yield* logged("in memory", socket, peer, server), 3, secret)
      const json = JSON.parse(JSON.stringify(socket)) as Record<string, unknown>
      assert.strictEqual(json.remoteAddress, "127.0.0.1:7000")
      assert.strictEqual(json.unread, secret.length)
    }).pipe(Effect.scoped, Effect.provide(TcpTest.layer)))
})
