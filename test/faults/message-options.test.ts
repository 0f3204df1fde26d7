/**
 * Bad input to `TcpMessage`, fuzzed with fast-check: the protocols' options
 * (`max`, prefix `size` and `endian`, suffix delimiters), the socket itself,
 * and what is sent (messages, part lists). An invalid value fails with
 * `InvalidArgument` (EINVAL): never a throw, never a defect; a valid one is
 * accepted.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import fc from "fast-check"
import { TcpClient, TcpListener, TcpMessage, TcpNode } from "../../src/index.ts"
import type { TcpSocket } from "../../src/index.ts"
import { checkFdLeaks, expectPoolIdle } from "../helpers.ts"
import { bad, either, good, optional, optionsOf, property, show } from "./arbitraries.ts"
import { classify, type Outcome } from "./support.ts"

const SLOT = 4 * 1024
const layer = Layer.orDie(TcpNode.layerWith({ slots: 8, bufferSize: SLOT }))
const T = { timeout: "3 seconds" } as const

const judge = (label: string, outcome: Outcome, ok: boolean) => {
  if (outcome.kind === "defect") return assert.fail(`${label}: defect (or a throw)\n${outcome.cause}`)
  if (ok) return assert.strictEqual(outcome.kind, "success", `${label}: valid input rejected: ${JSON.stringify(outcome)}`)
  assert.strictEqual(outcome.kind, "error", `${label}: invalid input accepted`)
  if (outcome.kind === "error") {
    assert.strictEqual(outcome.tag, "InvalidArgument", `${label}: ${String(outcome.error)}`)
    assert.strictEqual((outcome.error as { errno?: unknown }).errno, "EINVAL", label)
  }
}

const attempt = <A, E>(make: () => Effect.Effect<A, E>): Effect.Effect<Outcome> =>
  Effect.map(Effect.exit(Effect.suspend(make)), classify)

const junk = fc.constantFrom<unknown>(null, true, {}, [], "8", 8n, Symbol.for("x"), () => 1, NaN, Infinity)

const max = either(
  fc.oneof(fc.integer({ min: 1, max: 2 ** 31 }), fc.constant(Number.MAX_SAFE_INTEGER)),
  fc.oneof(
    fc.integer({ min: -(2 ** 31), max: 0 }),
    fc.double({ noNaN: false }).filter((n) => !Number.isSafeInteger(n) || n < 1),
    fc.constant(2 ** 53),
    junk
  )
)
const size = either(fc.constantFrom(1, 2, 4, 8), fc.oneof(fc.integer().filter((n) => ![1, 2, 4, 8].includes(n)), junk))
const endian = either(fc.constantFrom("big", "little"), fc.oneof(fc.string().filter((s) => s !== "big" && s !== "little"), junk))
const delimiter = either(
  fc.oneof(fc.string({ minLength: 1, maxLength: 8 }), fc.uint8Array({ minLength: 1, maxLength: 8 })),
  fc.oneof(fc.constantFrom<unknown>("", new Uint8Array(0), new Uint8Array(SLOT + 1), undefined, ["\n"]), junk.filter((u) => typeof u !== "string"))
)
const socketOrNot = fc.oneof(
  { arbitrary: good(fc.constant("socket")), weight: 4 },
  { arbitrary: bad(fc.constantFrom<unknown>(undefined, null, {}, "127.0.0.1:80", { [Symbol.for("x")]: 1 })), weight: 1 }
)

const connected = Effect.gen(function*() {
  const listener = yield* TcpListener.listen("127.0.0.1:0")
  const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
  const server = yield* listener.accept(T)
  return { client, server }
})

describe("faults: TcpMessage bad input (fast-check)", () => {
  checkFdLeaks()

  it.live("crlf, suffix and prefix: options, delimiters and the socket are InvalidArgument exactly when invalid", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const { client } = yield* connected
        const pick = (s: unknown) => s === "socket" ? client : s as TcpSocket.TcpSocket
        yield* property(
          fc.tuple(socketOrNot, optional(optionsOf({ max })), delimiter, optional(optionsOf({ max, size, endian }))),
          300,
          ([s, o, d, p]) =>
            Effect.gen(function*() {
              const socket = pick(s.value)
              const options = o.value as TcpMessage.Options | undefined
              judge(`crlf(${show(s.value)}, ${show(options)})`, yield* attempt(() => TcpMessage.crlf(socket, options)), s.ok && o.ok)
              judge(
                `suffix(${show(s.value)}, ${show(d.value)}, ${show(options)})`,
                yield* attempt(() => TcpMessage.suffix(socket, d.value as string, options)),
                s.ok && d.ok && o.ok
              )
              judge(
                `prefix(${show(s.value)}, ${show(p.value)})`,
                yield* attempt(() => TcpMessage.prefix(socket, p.value as TcpMessage.PrefixOptions)),
                s.ok && p.ok
              )
            })
        )
      }))
      yield* expectPoolIdle
    }).pipe(Effect.provide(layer)), 60_000)

  it.live("send and sendv: what is not bytes is InvalidArgument, and nothing is sent", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const { client, server } = yield* connected
        const lines = yield* TcpMessage.prefix(client)
        const notBytes = fc.constantFrom<unknown>(null, undefined, "abc", [1, 2], new Uint16Array(2), new ArrayBuffer(2), 3)
        yield* property(fc.tuple(notBytes, fc.array(notBytes, { minLength: 1, maxLength: 3 })), 100, ([m, parts]) =>
          Effect.gen(function*() {
            judge(`send(${show(m)})`, yield* attempt(() => lines.send(m as Uint8Array)), false)
            judge(`sendv(${show(m)})`, yield* attempt(() => lines.sendv(m as Array<Uint8Array>)), false)
            judge(`sendv(${show(parts)})`, yield* attempt(() => lines.sendv([new Uint8Array(1), ...parts] as Array<Uint8Array>)), false)
          }))
        // Nothing reached the peer: the first message it gets is this one.
        yield* lines.send(new Uint8Array([7]), T)
        assert.deepStrictEqual([...(yield* server.recv(5, T))], [0, 0, 0, 1, 7])
      }))
      yield* expectPoolIdle
    }).pipe(Effect.provide(layer)), 60_000)
})
