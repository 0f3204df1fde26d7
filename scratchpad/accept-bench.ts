/**
 * Connect+accept throughput of TcpListener: `npx node scratchpad/accept-bench.ts [connects] [inFlight] [rounds]`.
 * Plain node:net clients connect to a TcpListener in the same process; an
 * accept loop takes each connection and closes it. Prints connections per
 * second for each round, then the median.
 */
import { Effect } from "effect"
import * as Net from "node:net"
import { TcpListener, TcpNode } from "../src/index.ts"

const connects = Number(process.argv[2] ?? 5000)
const inFlight = Number(process.argv[3] ?? 64)
const rounds = Number(process.argv[4] ?? 7)

const connectClose = (port: number) =>
  new Promise<void>((resolve, reject) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.on("error", reject)
    socket.on("close", () => resolve())
    socket.on("end", () => socket.end())
  })

const clients = async (port: number, count: number) => {
  let next = 0
  const worker = async () => {
    while (next < count) {
      next += 1
      await connectClose(port)
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
}

const round = (count: number) =>
  Effect.gen(function*() {
    const listener = yield* TcpListener.listen("127.0.0.1:0", { backlog: 1024 })
    const serving = Effect.forEach(
      Array.from({ length: count }),
      () => Effect.scoped(Effect.flatMap(listener.accept({ timeout: "10 seconds" }), (socket) => socket.close({ timeout: "10 seconds" }))),
      { concurrency: inFlight, discard: true }
    )
    const start = performance.now()
    yield* Effect.all([serving, Effect.promise(() => clients(listener.port, count))], { concurrency: 2, discard: true })
    return count / ((performance.now() - start) / 1000)
  }).pipe(Effect.scoped)

const program = Effect.gen(function*() {
  yield* round(Math.min(1000, connects))
  const rates: Array<number> = []
  for (let i = 0; i < rounds; i++) {
    const rate = yield* round(connects)
    rates.push(rate)
    console.log(`round ${i + 1}: ${Math.round(rate)} connects/s`)
  }
  rates.sort((a, b) => a - b)
  console.log(`median ${Math.round(rates[Math.floor(rates.length / 2)] ?? 0)} connects/s over ${rounds} rounds of ${connects}`)
}).pipe(Effect.provide(TcpNode.layerWith({ slots: 256, bufferSize: 16 * 1024 })))

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
