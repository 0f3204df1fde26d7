/**
 * The receive ring: whatever mix of receive sizes, arrival sizes and pauses,
 * every byte comes out once and in order, while the ring fills, pauses the
 * kernel's reads, wraps around the slot's end and resumes, on real loopback
 * sockets with the 16 KiB test slots.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import type * as Net from "node:net"
import { TcpClient, TcpSocket } from "../src/index.ts"
import { NodeTransport } from "../src/internal/node/transport.ts"
import { connectionOf } from "../src/internal/tcpSocket.ts"
import { checkFdLeaks, rawServer, withTcp } from "./helpers.ts"

const T = { timeout: "5 seconds" } as const
const SLOT = 16 * 1024

/** `n` bytes of a stream whose byte `i` is a hash of `i`, so any loss, repeat or reorder shows. */
const streamBytes = (n: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (Math.imul(i + 1, 2654435761) >>> 13) & 0xff)

type Receive =
  | { readonly op: "recv" | "recvInto" | "recvSome"; readonly n: number }
  | { readonly op: "recvv"; readonly sizes: ReadonlyArray<number> }
  | { readonly op: "sleep"; readonly ms: number }

const size = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 3 * SLOT }))
const receive: fc.Arbitrary<Receive> = fc.oneof(
  fc.record({ op: fc.constantFrom("recv" as const, "recvInto" as const), n: size }),
  fc.record({ op: fc.constant("recvv" as const), sizes: fc.array(size, { minLength: 1, maxLength: 3 }) }),
  fc.record({ op: fc.constant("recvSome" as const), n: size }),
  fc.record({ op: fc.constant("sleep" as const), ms: fc.integer({ min: 1, max: 15 }) })
)

/** Counts calls to `method` on `target` from now on, still calling through. */
const countCalls = (target: object, method: string): () => number => {
  const original: unknown = Reflect.get(target, method)
  let calls = 0
  if (typeof original === "function") {
    Reflect.set(target, method, function(this: unknown, ...args: Array<unknown>) {
      calls += 1
      return Reflect.apply(original, this, args)
    })
  }
  return () => calls
}

/** The libuv handle under one of our sockets. */
const handleOf = (socket: TcpSocket.TcpSocket): object => {
  const transport = connectionOf(socket)?.transport
  const handle: unknown = Reflect.get(transport instanceof NodeTransport ? transport.socket : {}, "_handle")
  assert.isTrue(typeof handle === "object" && handle !== null, "the socket has a libuv handle")
  return handle as object
}

/** Sleeps let the ring fill; a run takes at most this many. */
const MAX_SLEEPS = 20

/** Runs `receives` (cycling) until `total` bytes came out; returns them in order. */
const drain = (socket: TcpSocket.TcpSocket, total: number, receives: ReadonlyArray<Receive>) =>
  Effect.gen(function*() {
    const out = new Uint8Array(total)
    let got = 0
    let sleeps = 0
    for (let i = 0; got < total && i < 200_000; i++) {
      const step = receives[i % receives.length]
      if (step === undefined) break
      const left = total - got
      switch (step.op) {
        case "sleep":
          if (sleeps++ < MAX_SLEEPS) yield* Effect.sleep(step.ms)
          break
        case "recv":
        case "recvSome": {
          const n = Math.min(step.n, left)
          const bytes = yield* (step.op === "recv" ? socket.recv(n, T) : socket.recvSome(n, T))
          out.set(bytes, got)
          got += bytes.length
          break
        }
        case "recvInto": {
          const n = Math.min(step.n, left)
          yield* socket.recvInto(out.subarray(got, got + n), T)
          got += n
          break
        }
        case "recvv": {
          const buffers: Array<Uint8Array> = []
          let at = got
          for (const n of step.sizes) {
            const take = Math.min(n, total - at)
            buffers.push(out.subarray(at, at + take))
            at += take
          }
          yield* socket.recvv(buffers, T)
          got = at
          break
        }
      }
    }
    assert.strictEqual(got, total, "the receives stopped early")
    return out
  })

describe("the receive ring", () => {
  checkFdLeaks()

  it.live("delivers every byte once and in order through fills, pauses and wraps", () => {
    let pauses = 0
    return Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 160 * 1024 }),
          fc.array(fc.integer({ min: 1, max: 40 * 1024 }), { minLength: 1, maxLength: 8 }),
          fc.array(receive, { minLength: 1, maxLength: 12 }),
          (total, writes, receives) =>
            Effect.runPromise(withTcp(Effect.gen(function*() {
              const stream = streamBytes(total)
              const server = yield* rawServer((peer: Net.Socket) => {
                let at = 0
                let i = 0
                const pump = () => {
                  while (at < total) {
                    const n = Math.min(writes[i++ % writes.length] ?? 1, total - at)
                    const more = peer.write(stream.subarray(at, at + n))
                    at += n
                    if (!more) return
                  }
                }
                peer.on("drain", pump)
                peer.on("error", () => {})
                pump()
              })
              const client = yield* TcpClient.connect(server.address, T)
              const handle = handleOf(client)
              const regionsSet = countCalls(handle, "useUserBuffer")
              const stops = countCalls(handle, "readStop")
              // One receive that always makes progress, so a run never only sleeps.
              const received = yield* drain(client, total, [...receives, { op: "recvSome", n: SLOT }])
              assert.deepStrictEqual(received, stream)
              // Node's other way to move the read region stacks a native listener per call.
              assert.strictEqual(regionsSet(), 0, "useUserBuffer after connect")
              pauses += stops()
            })))
        ),
        { numRuns: 40, interruptAfterTimeLimit: 60_000 }
      )
    ).pipe(Effect.tap(() => Effect.sync(() => assert.isAbove(pauses, 0, "no run filled the ring"))))
  }, 90_000)
})
