/**
 * Shared by the orchestrator (`run.ts`), the peer (`peer.ts`) and the three
 * clients: the job a client child runs, the result it prints, the wire
 * protocol the peer speaks, the measuring helpers (heap bytes allocated,
 * percentiles, open TCP handles, optional profiles) and the figures each
 * workload reports. Must not import `effect`: the raw client stays a plain
 * `node:net` program (the Effect clients' helpers are in `effect-common.ts`).
 */
import * as Fs from "node:fs"
import * as Inspector from "node:inspector/promises"
import * as Net from "node:net"
import * as Path from "node:path"
import * as V8 from "node:v8"

/** The three implementations under test, in the order each round runs them. */
export const impls = ["raw", "tcp", "socket"] as const
export type Impl = (typeof impls)[number]

export const implNames: Record<Impl, string> = {
  raw: "raw node:net",
  tcp: "effect-tcp",
  socket: "effect/socket"
}

/** Every workload a client knows how to run. */
export type Workload =
  | "pingpong" // 16-byte request/response, sequential (effect-tcp: send + recv(16))
  | "pingpong-into" // same, effect-tcp: send + recvInto(reused 16-byte buffer)
  | "pingpong-1core" // same as pingpong, the client pinned to the peer's core
  | "bulk-send" // client -> peer, 64 KiB chunks, peer acks at the end
  | "bulk-recv" // peer -> client; effect-tcp recv(65536), raw `data`, effect/socket pull
  | "bulk-recv-into" // peer -> client; effect-tcp recvInto(one reused 64 KiB buffer)
  | "connect-seq" // connect + graceful close, one at a time
  | "connect-par" // connect + graceful close, `inFlight` at a time
  | "connect-seq-abort" // connect + abort (raw: destroy), one at a time
  | "connect-par-abort" // connect + abort, `inFlight` at a time
  | "idle" // RSS with `idleConns` idle open connections
  | "lines" // `linesCount` CRLF lines from the peer; effect-tcp recvUntil("\r\n"), raw split by hand, effect/socket splitLines
  | "lines-crlf" // same, effect-tcp TcpMessage.crlf(socket).recv()
  | "lines-stream" // same, effect-tcp TcpMessage.crlf(socket).stream (every buffered line per pull)
  | "request-connect" // 16-byte request/response, a connect per request, sequential
  | "request-pool" // same through TcpClient.pool(address, { size: 1 })
  | "tls-pingpong" // pingpong over TLS (node:tls peer); effect-tcp send + recv(16), raw node:tls `data`
  | "tls-bulk-recv-into" // bulk receive over TLS; effect-tcp recvInto(one reused 64 KiB buffer), raw node:tls `data`
  | "workers-1" // a load generator's 16-byte requests to an echo server of 1 worker (effect-tcp: TcpListener.serve)
  | "workers-2" // same, 2 workers sharing the port with reusePort

/** The peer's listeners, one per kind, fresh for every client run. */
export interface Ports {
  /** Echoes every byte back (ping-pong). */
  readonly echo: number
  /** Reads an 8-byte length N, discards N bytes, answers with an 8-byte ack. */
  readonly sink: number
  /** Reads an 8-byte length N, sends N bytes in 64 KiB chunks. */
  readonly source: number
  /** Accepts and reads to EOF, ending its side when the client's FIN arrives. */
  readonly accept: number
  /** Accepts and holds connections open without sending anything. */
  readonly idle: number
  /** Reads an 8-byte count N, sends N CRLF-terminated lines (`lineAt`) in large writes. */
  readonly lines: number
  /** As `echo`, over TLS (node:tls, the bench's certificate); absent when the peer has no certificate. */
  readonly tlsEcho?: number
  /** As `source`, over TLS. */
  readonly tlsSource?: number
}

/**
 * The PEM files of the bench's TLS rows, made once per invocation by
 * `run.ts` with the `openssl` CLI: a CA, and a certificate it signed for
 * `localhost` and 127.0.0.1 that the peer serves.
 */
export interface TlsFiles {
  readonly caFile: string
  readonly certFile: string
  readonly keyFile: string
}

export interface Params {
  readonly pingpongCount: number
  readonly pingpongWarmup: number
  readonly bulkBytes: number
  readonly bulkWarmupBytes: number
  readonly chunkSize: number
  readonly connects: number
  readonly connectsWarmup: number
  readonly inFlight: number
  readonly idleConns: number
  readonly linesCount: number
  readonly linesWarmup: number
  readonly requests: number
  readonly requestsWarmup: number
  /** Requests timed in the connect-per-request row (fewer than `requests`: each costs a connect and a close). */
  readonly requestConnects: number
  readonly tlsPingpongCount: number
  readonly tlsPingpongWarmup: number
  /** Connections the load generator keeps busy in the workers rows, each with one request outstanding. */
  readonly workerConnections: number
  /** Requests the load generator times in the workers rows (over all connections), after `workerWarmup`. */
  readonly workerRequests: number
  readonly workerWarmup: number
}

export interface Job {
  readonly impl: Impl
  readonly workload: Workload
  readonly host: string
  readonly ports: Ports
  readonly params: Params
  /** The TLS rows' files (clients read the CA). */
  readonly tls?: TlsFiles
  /** The workers rows: the port of the echo server under test (`server-workers.ts`). */
  readonly servePort?: number
  /** The workers rows: that server's process id (the load generator reads its CPU time). */
  readonly servePid?: number
}

/**
 * What a client prints (one JSON line on stdout). `value` is the workload's
 * headline figure (round-trips/s, MiB/s, connects/s, RSS bytes per idle
 * connection); `metrics` holds the others.
 */
export interface Result {
  readonly value: number
  readonly metrics: Readonly<Record<string, number>>
  /** Wall time of the timed section, ms. */
  readonly elapsedMs: number
}

export const HEADER_BYTES = 8
export const ACK_BYTES = 8

/** The 8-byte length header the sink and source listeners read first. */
export const encodeLength = (n: number): Buffer => {
  const header = Buffer.alloc(HEADER_BYTES)
  header.writeUInt32LE(n % 0x1_0000_0000, 0)
  header.writeUInt32LE(Math.floor(n / 0x1_0000_0000), 4)
  return header
}

export const decodeLength = (header: Uint8Array): number => {
  const view = Buffer.from(header.buffer, header.byteOffset, HEADER_BYTES)
  return view.readUInt32LE(0) + view.readUInt32LE(4) * 0x1_0000_0000
}

export const MiB = 1024 * 1024

/** A line's text, without its CRLF. */
export const LINE_BYTES = 64
/** The peer sends lines from a block of this many distinct ones, over and over. */
export const LINES_PER_BLOCK = 1024

/**
 * The text of line `index` (counted from 0 in each reply): its number in
 * the block, then letters shifted by it, `LINE_BYTES` bytes of ASCII, no CR
 * or LF. The clients check some lines against it.
 */
export const lineAt = (index: number): Buffer => {
  const n = index % LINES_PER_BLOCK
  const text = Buffer.alloc(LINE_BYTES)
  text.write(`${String(n).padStart(4, "0")}:`, 0, "latin1")
  for (let i = 5; i < LINE_BYTES; i++) text[i] = 0x61 + ((n + i) % 26)
  return text
}

/** `LINES_PER_BLOCK` lines, each with its CRLF: what the peer writes, whole or cut after the last line asked for. */
export const lineBlock = (): Buffer =>
  Buffer.concat(Array.from({ length: LINES_PER_BLOCK }, (_, i) => Buffer.concat([lineAt(i), Buffer.from("\r\n")])))

/** The lines a client checks byte for byte (besides every line's length, and the count). */
export const isCheckedLine = (index: number, count: number): boolean =>
  index % 4099 === 0 || index === count - 1 || index === LINES_PER_BLOCK - 1 || index === LINES_PER_BLOCK

/**
 * Why `line` (without CRLF) is not line `index` of a reply of `count`:
 * every line's length is checked, some lines' content (`isCheckedLine`);
 * `undefined` when it is right.
 */
export const lineProblem = (line: Uint8Array | string, index: number, count: number): string | undefined =>
  line.length !== LINE_BYTES
    ? `line ${index}: ${line.length} ${typeof line === "string" ? "characters" : "bytes"}`
    : isCheckedLine(index, count)
    ? lineMismatch(line, index)
    : undefined

/** Why `line` (without CRLF) is not line `index` of the reply, or `undefined` when it is; bytes or text. */
export const lineMismatch = (line: Uint8Array | string, index: number): string | undefined => {
  const expected = lineAt(index)
  const same = typeof line === "string"
    ? line === expected.toString("latin1")
    : line.length === LINE_BYTES && expected.equals(line)
  if (same) return undefined
  const got = typeof line === "string" ? line : Buffer.from(line.buffer, line.byteOffset, line.length).toString("latin1")
  return `line ${index}: expected ${JSON.stringify(expected.toString("latin1"))}, got ${JSON.stringify(got)}`
}

/**
 * Bytes allocated on the V8 heap while it runs, measured with
 * `v8.GCProfiler` (Node >= 19).
 *
 * V8's public API has no cumulative "bytes allocated" counter
 * (`v8.getHeapStatistics()` has none in Node 24), and `process.memoryUsage()`
 * deltas miss everything collected in between. But between two collections
 * a heap space's used size grows only by allocation, and the profiler records
 * every space's used size before and after every GC (scavenges included), so
 *
 *   allocated = sum over GCs i, spaces s of (before_i[s] - after_{i-1}[s])
 *             + sum over spaces of (end[s] - after_last[s])
 *
 * with after_0 the sizes at start. The young generation (where nearly all
 * short-lived I/O garbage goes) is exact. Old-generation spaces can also
 * shrink between GCs while the concurrent sweeper frees a previous
 * mark-sweep's garbage, so for them only growth is counted (an undercount
 * only when old-space allocation and sweeping overlap). Checked against
 * known allocations: a loop of 1e6 two-field objects reads 40.0 bytes each,
 * V8's exact size for them on 64-bit Node. JS heap only: ArrayBuffer backing
 * stores (Buffer contents) live outside it.
 */
export const allocationMeter = (): (() => number) => {
  const profiler = new V8.GCProfiler()
  const sizes = () => new Map(V8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_used_size]))
  const young = new Set(["new_space", "new_large_object_space"])
  const grown = (from: ReadonlyMap<string, number>, to: ReadonlyMap<string, number>): number => {
    let total = 0
    for (const [space, size] of to) {
      const delta = size - (from.get(space) ?? 0)
      total += young.has(space) ? delta : Math.max(0, delta)
    }
    return total
  }
  const start = sizes()
  profiler.start()
  return () => {
    const end = sizes()
    const data = profiler.stop()
    let previous: ReadonlyMap<string, number> = start
    let total = 0
    for (const gc of data?.statistics ?? []) {
      const before = new Map(gc.beforeGC.heapSpaceStatistics.map((s) => [s.spaceName, s.spaceUsedSize]))
      total += grown(previous, before)
      previous = new Map(gc.afterGC.heapSpaceStatistics.map((s) => [s.spaceName, s.spaceUsedSize]))
    }
    return total + grown(previous, end)
  }
}

/** The q-quantile (0..1) of `samples`, nearest-rank on a sorted copy. */
export const quantile = (samples: ArrayLike<number>, q: number): number => {
  const sorted = Float64Array.from(samples).sort()
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank] ?? Number.NaN
}

/** Latency figures (µs) from per-round-trip samples in ms. */
export const latencyMetrics = (samplesMs: Float64Array): Record<string, number> => ({
  p50us: quantile(samplesMs, 0.5) * 1000,
  p99us: quantile(samplesMs, 0.99) * 1000
})

/** How many TCP handles this process still holds (Node's active resources). */
export const openTcpHandles = (): number =>
  process.getActiveResourcesInfo().filter((name) => name === "TCPSocketWrap").length

/** A full GC when the child runs with `--expose-gc` (the orchestrator passes it). */
export const collect = (): void => {
  const gc: unknown = Reflect.get(globalThis, "gc")
  if (typeof gc === "function") gc()
}

/** Resolves after `ms`; for settling between phases. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Memory figures after `settleMs` and two full GCs, so only what is still held counts. */
export const settledMemory = async (settleMs: number): Promise<NodeJS.MemoryUsage> => {
  await sleep(settleMs)
  collect()
  collect()
  return process.memoryUsage()
}

/** The idle-connections result: growth of RSS (the figure), JS heap and external memory, per connection. */
export const perConnection = (
  before: NodeJS.MemoryUsage,
  after: NodeJS.MemoryUsage,
  n: number,
  elapsedMs: number
): Result => ({
  value: (after.rss - before.rss) / n,
  metrics: {
    heapPerConn: (after.heapUsed - before.heapUsed) / n,
    externalPerConn: (after.external - before.external) / n
  },
  elapsedMs
})

/**
 * Waits until this process holds at most `baseline` TCP handles, polling
 * every turn of the event loop, for at most `limitMs`. Every connects
 * workload ends with it, so closes still finishing in the background
 * (effect-tcp's lingering close, Node's asynchronous handle close) are
 * inside the timed section for every implementation alike.
 */
export const awaitHandlesClosed = async (baseline: number, limitMs: number): Promise<void> => {
  const until = performance.now() + limitMs
  while (openTcpHandles() > baseline) {
    if (performance.now() > until) throw new Error(`TCP handles still open after ${limitMs} ms`)
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
}

/**
 * With `BENCH_CPU_PROF=<dir>` (set by `run.ts --cpu-prof <dir>`), records a
 * CPU profile of the timed section only (startup and warm-up excluded) into
 * `<dir>/<impl>-<workload>-<pid>.cpuprofile`; with `BENCH_HEAP_PROF=<dir>`
 * (`--heap-prof`), a sampling heap profile (where the section's allocations
 * come from, every ~1 KiB sampled, kept objects and garbage alike) into
 * `<dir>/<impl>-<workload>-<pid>.heapprofile`. Both open in Chrome DevTools.
 * Returns the function that stops and writes them; without the variables
 * both are no-ops.
 */
export const startProfile = async (job: Job): Promise<() => Promise<void>> => {
  const cpuDir = process.env["BENCH_CPU_PROF"] ?? ""
  const heapDir = process.env["BENCH_HEAP_PROF"] ?? ""
  if (cpuDir === "" && heapDir === "") return async () => {}
  const session = new Inspector.Session()
  session.connect()
  const name = `${job.impl}-${job.workload}-${process.pid}`
  if (cpuDir !== "") {
    await session.post("Profiler.enable")
    await session.post("Profiler.setSamplingInterval", { interval: 100 })
    await session.post("Profiler.start")
  }
  if (heapDir !== "") {
    await session.post("HeapProfiler.enable")
    await session.post("HeapProfiler.startSampling", {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true
    })
  }
  return async () => {
    if (cpuDir !== "") {
      const { profile } = await session.post("Profiler.stop")
      Fs.mkdirSync(cpuDir, { recursive: true })
      Fs.writeFileSync(Path.join(cpuDir, `${name}.cpuprofile`), JSON.stringify(profile))
    }
    if (heapDir !== "") {
      const { profile } = await session.post("HeapProfiler.stopSampling")
      Fs.mkdirSync(heapDir, { recursive: true })
      Fs.writeFileSync(Path.join(heapDir, `${name}.heapprofile`), JSON.stringify(profile))
    }
    session.disconnect()
  }
}

/** What a timed section measured: its wall time (ms) and the heap bytes it allocated. */
export interface Measured {
  readonly elapsedMs: number
  readonly heap: number
}

/** Ping-pong: round trips per second, latency percentiles, heap bytes per round trip. */
export const pingpongResult = (count: number, samplesMs: Float64Array, { elapsedMs, heap }: Measured): Result => ({
  value: count / (elapsedMs / 1000),
  metrics: { ...latencyMetrics(samplesMs), heapPerOp: heap / count },
  elapsedMs
})

/** Bulk transfer: MiB per second, heap bytes per MiB moved. */
export const bulkResult = (bytes: number, { elapsedMs, heap }: Measured): Result => ({
  value: bytes / MiB / (elapsedMs / 1000),
  metrics: { heapPerMiB: heap / (bytes / MiB) },
  elapsedMs
})

/** Connects: connects per second, heap bytes per connect. */
export const connectsResult = (count: number, { elapsedMs, heap }: Measured): Result => ({
  value: count / (elapsedMs / 1000),
  metrics: { heapPerOp: heap / count },
  elapsedMs
})

/** Lines received: lines per second, heap bytes per line. */
export const linesResult = (count: number, { elapsedMs, heap }: Measured): Result => ({
  value: count / (elapsedMs / 1000),
  metrics: { heapPerLine: heap / count },
  elapsedMs
})

/** Request/responses: requests per second, heap bytes per request. */
export const requestsResult = (count: number, { elapsedMs, heap }: Measured): Result => ({
  value: count / (elapsedMs / 1000),
  metrics: { heapPerOp: heap / count },
  elapsedMs
})

/** A connects workload's shape: how many connects are in flight at once, and whether each ends in an abort. */
export const connectsShape = (job: Job): { readonly inFlight: number; readonly abort: boolean } => ({
  inFlight: job.workload.startsWith("connect-par") ? job.params.inFlight : 1,
  abort: job.workload.endsWith("abort")
})

/** Runs `section` as the timed section: wall time, heap bytes allocated, optional CPU profile. */
export const measure = async (job: Job, section: () => Promise<void>): Promise<Measured> => {
  const stopProfile = await startProfile(job)
  const allocated = allocationMeter()
  const t0 = performance.now()
  await section()
  const elapsedMs = performance.now() - t0
  const heap = allocated()
  await stopProfile()
  return { elapsedMs, heap }
}

/** Reads the job from argv, runs it, prints the result as one JSON line. */
export const clientMain = (run: (job: Job) => Promise<Result>): void => {
  const arg = process.argv[2]
  if (arg === undefined) {
    process.stderr.write("usage: client-*.ts '<job JSON>'\n")
    process.exit(2)
  }
  const job = JSON.parse(arg) as Job
  run(job).then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0))
    },
    (error: unknown) => {
      process.stderr.write(`${job.impl} ${job.workload}: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
      process.exit(1)
    }
  )
}

/** A raw `node:net` connection with Nagle off, once it is connected. */
export const connectNet = (host: string, port: number): Promise<Net.Socket> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ host, port, noDelay: true })
    socket.once("connect", () => {
      socket.off("error", reject)
      resolve(socket)
    })
    socket.once("error", reject)
  })
