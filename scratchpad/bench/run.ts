/**
 * `npm run bench`: the same workloads on 127.0.0.1 through raw `node:net`,
 * effect-tcp and Effect's `effect/socket` (`@effect/platform-node`
 * `NodeSocket`), printed as one table of medians, spreads and ratios to raw
 * `node:net`, and written to `bench-results.json`.
 *
 * How it measures:
 * - The peer (`peer.ts`) is one plain `node:net` program, the same for all
 *   three implementations, in its own process, pinned to CPU 0 while the
 *   measured clients are pinned to CPU 1 (`--pin`), so on a 2-core machine
 *   they never share a core. It opens fresh listeners for every client run.
 *   One extra ping-pong row runs the client on the peer's core: see the
 *   footnote printed under the table for why. The TLS rows use the peer's
 *   `node:tls` listeners, with a CA and a certificate made for this
 *   invocation by the `openssl` CLI in a temporary directory.
 * - The workers rows measure a server instead: an echo server of 1 or 2
 *   worker threads sharing a port with `reusePort` (`server-workers.ts`),
 *   driven by a load generator in its own process (`load-generator.c`,
 *   compiled with `cc` into a temporary directory; `load-generator.ts`
 *   when there is no C compiler). With `--pin split`, the 1-worker server
 *   runs on the clients' core and the load generator on the peer's (idle
 *   in these rows); with 2 workers neither is pinned, as the workers need
 *   both cores. The raw `node:net` echo server, the machine's reference,
 *   runs only when `--only` names these rows (time).
 * - Every (implementation, workload, run) is a fresh child process
 *   (`client-raw.ts`, `client-tcp.ts`, `client-socket.ts`), so heap, RSS
 *   and JIT state never leak from one measurement into another. Each child
 *   warms up on the workload before its timed section.
 * - Runs interleave: round 1 runs every workload as raw, effect-tcp,
 *   effect/socket; then round 2; ... so machine noise hits all alike.
 * - Each cell is the median over the runs, with the min–max spread; the
 *   ratio is that median over raw `node:net`'s median from the same
 *   invocation. The methods behind each figure are in the footnote below
 *   the table (and in `common.ts` for heap allocation).
 * - Default sizes (256 MiB bulk, 20,000 round trips, 2,000 connects, 1,000
 *   idle connections, 100,000 lines, 10,000 pooled requests, 5,000 TLS round
 *   trips, 30,000 echo-server requests, 5 runs) take about 3⅓ minutes on a
 *   quiet 2-core VM, 38 s of it the TLS and echo-server rows.
 *
 * Options (`npm run bench -- --runs 3 --only pingpong,bulk-recv`):
 *   --runs N          runs per cell (default 5; fewer than 5 only for trying things out)
 *   --only a,b        only these workloads: pingpong, pingpong-into, pingpong-1core,
 *                     bulk-send, bulk-recv, bulk-recv-into, connect-seq, connect-par,
 *                     connect-seq-abort, connect-par-abort, idle, lines, lines-crlf, lines-stream,
 *                     request-connect, request-pool, tls-pingpong, tls-bulk-recv-into,
 *                     workers-1, workers-2
 *   --impls a,b       only these implementations (raw,tcp,socket)
 *   --scale F         multiply every workload size by F (e.g. 0.1 for a quick look)
 *   --cpu-prof DIR    CPU-profile each client's timed section into DIR (slows it down)
 *   --heap-prof DIR   sampling heap profile of each client's timed section into DIR
 *   --verbose         show every client's stderr
 *   --budget S        start no new run after S seconds (default 270: npm ci + bench in 5 min)
 *   --pin MODE        split (default), same or none: see `pinning` below
 *   --json FILE       where to write the results (default bench-results.json)
 *   --help, -h        print these options
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import {
  type Impl,
  implNames,
  impls,
  type Job,
  MiB,
  type Params,
  type Ports,
  type Result,
  type TlsFiles,
  type Workload
} from "./common.ts"

const HOST = "127.0.0.1"
const here = import.meta.dirname
const started = performance.now()

// ------------------------------------------------------------------ options

const { values: options } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    only: { type: "string" },
    impls: { type: "string" },
    scale: { type: "string", default: "1" },
    "cpu-prof": { type: "string" },
    "heap-prof": { type: "string" },
    json: { type: "string", default: "bench-results.json" },
    pin: { type: "string", default: "split" },
    verbose: { type: "boolean", default: false },
    budget: { type: "string", default: "270" },
    help: { type: "boolean", short: "h", default: false }
  }
})

if (options.help) {
  // The options are documented once, in this file's header: print that section.
  const header = Fs.readFileSync(import.meta.filename, "utf8").split("\n */")[0] ?? ""
  const section = header.slice(header.indexOf(" * Options")).split("\n").map((line) => line.replace(/^ \*( |$)/, ""))
  process.stdout.write(`${section.join("\n")}\n`)
  process.exit(0)
}

const runs = Number(options.runs)
const budgetMs = Number(options.budget) * 1000
if (!(budgetMs > 0)) throw new Error("--budget must be a positive number of seconds")
const scale = Number(options.scale)
if (!Number.isInteger(runs) || runs < 1 || runs > 100) throw new Error("--runs must be an integer in 1..100")
if (!(scale > 0 && scale <= 10)) throw new Error("--scale must be in (0, 10]")
const nodeMajor = Number(process.versions.node.split(".")[0])
if (nodeMajor < 24) {
  throw new Error(`Node ${process.versions.node}: the bench needs Node 24 (npm run bench uses node_modules/.bin/node)`)
}

const sized = (n: number, min: number) => Math.max(min, Math.round(n * scale))
const params: Params = {
  pingpongCount: sized(20_000, 100),
  pingpongWarmup: sized(5_000, 100),
  bulkBytes: sized(256, 1) * MiB,
  bulkWarmupBytes: sized(32, 1) * MiB,
  chunkSize: 64 * 1024,
  connects: sized(2_000, 64),
  connectsWarmup: sized(200, 64),
  inFlight: 64,
  idleConns: sized(1_000, 64),
  linesCount: sized(100_000, 1_000),
  linesWarmup: sized(20_000, 1_000),
  requests: sized(10_000, 100),
  requestsWarmup: sized(1_000, 64),
  requestConnects: sized(2_000, 64),
  tlsPingpongCount: sized(5_000, 100),
  tlsPingpongWarmup: sized(1_000, 100),
  workerConnections: 64,
  workerRequests: sized(30_000, 1_000),
  workerWarmup: sized(5_000, 500)
}

// ------------------------------------------------------------------ pinning

/**
 * CPU pinning (`--pin`): `split` (default) puts the peer on CPU 0 and every
 * client on CPU 1, so they never share a core and the scheduler cannot move
 * them onto one mid-run (on this kind of VM, same-core and cross-core
 * ping-pong differ by 2×, and unpinned runs flip between the two); `same`
 * puts both on CPU 0; `none` leaves placement to the scheduler.
 */
const hasTaskset = (() => {
  try {
    return Fs.statSync("/usr/bin/taskset").isFile() || Fs.statSync("/bin/taskset").isFile()
  } catch {
    return false
  }
})()
const pinMode = options.pin
if (pinMode !== "split" && pinMode !== "same" && pinMode !== "none") throw new Error("--pin must be split, same or none")
const pinning = pinMode === "none" || !hasTaskset || (pinMode === "split" && Os.availableParallelism() < 2)
  ? { peer: undefined, client: undefined, text: "not pinned" }
  : pinMode === "split"
  ? { peer: "0", client: "1", text: "peer pinned to CPU 0, clients to CPU 1" }
  : { peer: "0", client: "0", text: "peer and clients pinned to CPU 0" }

// ---------------------------------------------------------------- workloads

/** What each workload measures and which implementations run it. */
interface WorkloadSpec {
  readonly id: Workload
  readonly title: string
  readonly impls: ReadonlyArray<Impl>
  /** The raw `node:net` figures this workload's ratios are taken against. */
  readonly baseline: Workload
  readonly figures: ReadonlyArray<Figure>
  /** Run the client on the peer's core (see `--pin`). */
  readonly sameCore?: boolean
  /** Implementations whose API could run it but the bench leaves out (time): "not run", not "—". */
  readonly notRun?: ReadonlyArray<Impl>
  /** Implementations run only when `--only` names this workload (time): "not run" otherwise. */
  readonly onDemand?: ReadonlyArray<Impl>
  /** Over TLS: needs the invocation's certificate (peer's TLS listeners). */
  readonly tls?: boolean
  /**
   * A server row: the implementation is the echo server (`server-workers.ts`,
   * this many worker threads), the client is the load generator.
   */
  readonly workers?: number
}

interface Figure {
  /** `value` or a key of `Result.metrics`. */
  readonly key: string
  readonly unit: string
  /** Displayed value = raw value / divisor. */
  readonly divisor?: number
}

const spec = (
  id: Workload,
  title: string,
  impls: ReadonlyArray<Impl>,
  figures: ReadonlyArray<Figure>,
  extra: Partial<Pick<WorkloadSpec, "baseline" | "sameCore" | "notRun" | "onDemand" | "tls" | "workers">> = {}
): WorkloadSpec => ({ id, title, impls, figures, baseline: extra.baseline ?? id, ...extra })

const all: ReadonlyArray<Impl> = impls
const n = (x: number) => x.toLocaleString("en-US")
const pingFigures: ReadonlyArray<Figure> = [
  { key: "value", unit: "round-trips/s" },
  { key: "p50us", unit: "p50 µs" },
  { key: "p99us", unit: "p99 µs" },
  { key: "heapPerOp", unit: "heap B/round-trip" }
]
const bulkFigures: ReadonlyArray<Figure> = [
  { key: "value", unit: "MiB/s" },
  { key: "heapPerMiB", unit: "heap KiB/MiB", divisor: 1024 }
]
const connectFigures: ReadonlyArray<Figure> = [
  { key: "value", unit: "connects/s" },
  { key: "heapPerOp", unit: "heap B/connect" }
]
const linesFigures: ReadonlyArray<Figure> = [
  { key: "value", unit: "lines/s" },
  { key: "heapPerLine", unit: "heap B/line" }
]
const serverFigures: ReadonlyArray<Figure> = [
  { key: "value", unit: "requests/s" },
  { key: "p50us", unit: "p50 µs" },
  { key: "p99us", unit: "p99 µs" },
  { key: "serverCpuPerOp", unit: "server CPU µs/request" },
  { key: "cpuPerOp", unit: "load gen. CPU µs/request" }
]
const requestFigures: ReadonlyArray<Figure> = [
  { key: "value", unit: "requests/s" },
  { key: "heapPerOp", unit: "heap B/request" }
]
const workloads: ReadonlyArray<WorkloadSpec> = [
  spec("pingpong", `ping-pong 16 B, sequential ×${n(params.pingpongCount)}`, all, pingFigures),
  spec("pingpong-into", "ping-pong, effect-tcp recvInto", ["tcp"], pingFigures, { baseline: "pingpong" }),
  spec("pingpong-1core", "ping-pong, client on the peer's core", all, pingFigures, { sameCore: true }),
  spec("bulk-send", `bulk send ${params.bulkBytes / MiB} MiB, 64 KiB chunks`, all, bulkFigures),
  spec("bulk-recv", `bulk recv ${params.bulkBytes / MiB} MiB`, all, bulkFigures),
  spec("bulk-recv-into", `bulk recv ${params.bulkBytes / MiB} MiB, recvInto`, ["tcp"], bulkFigures, {
    baseline: "bulk-recv"
  }),
  spec("connect-seq", `connect + close ×${n(params.connects)}, sequential`, all, connectFigures),
  spec("connect-par", `connect + close ×${n(params.connects)}, ${params.inFlight} in flight`, all, connectFigures),
  spec("connect-seq-abort", `connect + abort ×${n(params.connects)}, sequential`, ["raw", "tcp"], connectFigures),
  spec("connect-par-abort", `connect + abort ×${n(params.connects)}, ${params.inFlight} in flight`, ["raw", "tcp"], connectFigures),
  spec("idle", `${n(params.idleConns)} idle open connections`, all, [
    { key: "value", unit: "RSS KiB/conn", divisor: 1024 },
    { key: "heapPerConn", unit: "JS heap B/conn" },
    { key: "externalPerConn", unit: "external KiB/conn", divisor: 1024 }
  ]),
  spec("lines", `${n(params.linesCount)} CRLF lines of 64 B received, recvUntil`, all, linesFigures),
  spec("lines-crlf", "same, TcpMessage.crlf recv", ["tcp"], linesFigures, { baseline: "lines" }),
  spec("lines-stream", "same, TcpMessage.crlf stream", ["tcp"], linesFigures, { baseline: "lines" }),
  spec("request-connect", `request/response 16 B ×${n(params.requestConnects)}, a connect each`, ["raw", "tcp"], requestFigures, {
    notRun: ["socket"]
  }),
  spec("request-pool", `request/response 16 B ×${n(params.requests)}, TcpClient.pool size 1`, ["tcp"], requestFigures, {
    baseline: "request-connect"
  }),
  spec("tls-pingpong", `TLS ping-pong 16 B ×${n(params.tlsPingpongCount)} (raw: node:tls)`, ["raw", "tcp"], pingFigures, {
    tls: true,
    notRun: ["socket"]
  }),
  spec("tls-bulk-recv-into", `TLS bulk recv ${params.bulkBytes / MiB} MiB, recvInto (raw: node:tls)`, ["raw", "tcp"], bulkFigures, {
    tls: true,
    notRun: ["socket"]
  }),
  // raw node:net's echo server is the machine's reference, left out of a full run (time).
  spec("workers-1", `echo server, 1 worker, ${params.workerConnections} conns ×${n(params.workerRequests)}`, ["raw", "tcp"], serverFigures, {
    workers: 1,
    notRun: ["socket"],
    onDemand: ["raw"]
  }),
  spec("workers-2", "same, 2 workers (reusePort)", ["raw", "tcp"], serverFigures, {
    workers: 2,
    notRun: ["socket"],
    onDemand: ["raw"]
  })
]

const listOption = (text: string | undefined): Set<string> | undefined =>
  text === undefined ? undefined : new Set(text.split(",").map((s) => s.trim()).filter((s) => s.length > 0))
const onlyWorkloads = listOption(options.only)
const onlyImpls = listOption(options.impls)
for (const id of onlyWorkloads ?? []) {
  if (!workloads.some((w) => w.id === id)) throw new Error(`unknown workload ${id}`)
}
const selected = workloads.filter((w) =>
  (onlyWorkloads === undefined || onlyWorkloads.has(w.id)) && (w.sameCore !== true || pinning.peer !== undefined)
)
const wanted = (impl: Impl) => onlyImpls === undefined || onlyImpls.has(impl)
/** Whether `impl` runs `workload` in this invocation (see `onDemand`). */
const takesPart = (workload: WorkloadSpec, impl: Impl) =>
  wanted(impl) && workload.impls.includes(impl) &&
  (workload.onDemand?.includes(impl) !== true || onlyWorkloads?.has(workload.id) === true)

// ------------------------------------------------------------------ children

const children = new Set<ChildProcess>()
const killAll = () => {
  for (const child of children) child.kill("SIGKILL")
}
process.on("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAll()
    process.exit(130)
  })
}

/**
 * The children need about two descriptors per idle connection. When this
 * process's soft `ulimit -n` is lower, children start under `prlimit`:
 * raising only the soft limit when the hard one allows it, else both (which
 * needs CAP_SYS_RESOURCE; checked once). If neither works the idle workload
 * may fail with EMFILE, and is reported as failed.
 */
const fileLimits = (): { soft: number; hard: number } => {
  const limits = Fs.readFileSync("/proc/self/limits", "utf8")
  const match = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(limits)
  const parse = (x: string | undefined) => (x === undefined || x === "unlimited" ? Number.POSITIVE_INFINITY : Number(x))
  return { soft: parse(match?.[1]), hard: parse(match?.[2]) }
}
const needFiles = params.idleConns * 2 + 1024
const limitPrefix = ((): Array<string> => {
  const { soft, hard } = fileLimits()
  if (soft >= needFiles) return []
  if (hard >= needFiles) return ["prlimit", `--nofile=${needFiles}:`]
  const both = ["prlimit", `--nofile=${needFiles}:${needFiles}`]
  const probe = spawnSync(both[0] ?? "prlimit", [...both.slice(1), "true"], { stdio: "ignore" })
  if (probe.status === 0) return both
  process.stderr.write(`warning: ulimit -n is ${soft} and cannot be raised to ${needFiles}; the idle workload may fail\n`)
  return []
})()

const command = (args: ReadonlyArray<string>, cpu: string | undefined): [string, Array<string>] => {
  const pinned = cpu === undefined ? [] : ["taskset", "-c", cpu]
  const limited = limitPrefix
  const argv = [...pinned, ...limited, process.execPath, ...args]
  return [argv[0] ?? process.execPath, argv.slice(1)]
}

/**
 * The TLS rows' certificates, made once for this invocation with the
 * `openssl` CLI (3.0+ for `req -CA`) in a temporary directory removed at
 * exit: a CA, and an EC P-256 certificate it signed for localhost and
 * 127.0.0.1, which the peer serves. Undefined (the TLS rows then fail and
 * say why) when openssl cannot make them.
 */
const makeTlsFiles = (): TlsFiles | undefined => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-tcp-bench-tls-"))
  process.on("exit", () => Fs.rmSync(dir, { recursive: true, force: true }))
  // Our own configuration, so the system's openssl.cnf adds no extension.
  const config = Path.join(dir, "openssl.cnf")
  Fs.writeFileSync(config, "[req]\ndistinguished_name = dn\n[dn]\n")
  const file = (name: string) => Path.join(dir, name)
  const certificate = (name: string, subject: string, extensions: ReadonlyArray<string>, signed: boolean) =>
    execFileSync("openssl", [
      "req",
      "-config",
      config,
      "-x509",
      ...(signed ? ["-CA", file("ca.pem"), "-CAkey", file("ca.key")] : []),
      ...["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc", "-keyout", file(`${name}.key`)],
      ...["-out", file(`${name}.pem`), "-subj", subject, "-days", "2"],
      ...extensions.flatMap((extension) => ["-addext", extension])
    ], { stdio: ["ignore", "ignore", "pipe"], timeout: 20_000 })
  try {
    certificate("ca", "/CN=effect-tcp-bench-ca", ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign"], false)
    certificate("server", "/CN=localhost", [
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "basicConstraints=CA:FALSE",
      "extendedKeyUsage=serverAuth"
    ], true)
  } catch (error) {
    const stderr: unknown = Reflect.get(Object(error), "stderr")
    process.stderr.write(`warning: openssl could not make the TLS rows' certificates: ${String(stderr ?? error)}\n`)
    return undefined
  }
  return { caFile: file("ca.pem"), certFile: file("server.pem"), keyFile: file("server.key") }
}

/** The peer, controlled over IPC; with `tls`, it also opens TLS listeners. */
const startPeer = async (tls: TlsFiles | undefined) => {
  const peerArgs = tls === undefined ? [] : [tls.certFile, tls.keyFile]
  const [file, args] = command([Path.join(here, "peer.ts"), ...peerArgs], pinning.peer)
  const peer = spawn(file, args, { stdio: ["ignore", "inherit", "inherit", "ipc"] })
  children.add(peer)
  peer.on("exit", () => children.delete(peer))
  const request = (message: { type: string }, expect: string): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`peer did not answer ${message.type} in time`)), 10_000)
      const onMessage = (reply: unknown) => {
        const type = typeof reply === "object" && reply !== null ? Reflect.get(reply, "type") : undefined
        if (type === expect) done(undefined, reply)
        else if (type === "error") done(new Error(`peer: ${String(Reflect.get(Object(reply), "error"))}`))
      }
      const onExit = () => done(new Error("peer exited"))
      const done = (error: Error | undefined, reply?: unknown) => {
        clearTimeout(timer)
        peer.off("message", onMessage)
        peer.off("exit", onExit)
        if (error !== undefined) reject(error)
        else resolve(reply)
      }
      peer.on("message", onMessage)
      peer.once("exit", onExit)
      if (message.type !== "") peer.send(message)
    })
  await request({ type: "" }, "ready")
  return {
    open: async (): Promise<Ports> => Reflect.get(Object(await request({ type: "open" }, "ports")), "ports") as Ports,
    close: async (): Promise<void> => {
      await request({ type: "close" }, "closed")
    },
    stop: () => {
      peer.kill("SIGKILL")
    }
  }
}

const clientFile: Record<Impl, string> = {
  raw: "client-raw.ts",
  tcp: "client-tcp.ts",
  socket: "client-socket.ts"
}

/**
 * Starts the echo server of a workers row (`server-workers.ts`: `workers`
 * threads of `impl` sharing one port) on `cpu` (or unpinned) and resolves
 * with its port, its process id and how to stop it.
 */
const startServer = (
  impl: Impl,
  workers: number,
  cpu: string | undefined
): Promise<{ port: number; pid: number; stop: () => Promise<void> }> =>
  new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_COMPILE_CACHE: compileCache }
    const [file, args] = command([Path.join(here, "server-workers.ts"), JSON.stringify({ impl, workers, host: HOST })], cpu)
    const server = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], env })
    children.add(server)
    const exited = new Promise<void>((done) => server.once("exit", () => done()))
    let stdout = ""
    let stderr = ""
    const timer = setTimeout(() => server.kill("SIGKILL"), 10_000)
    server.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text))
    server.stdout.setEncoding("utf8").on("data", (text: string) => {
      stdout += text
      const line = stdout.split("\n")[0] ?? ""
      if (!stdout.includes("\n")) return
      clearTimeout(timer)
      const port: unknown = Reflect.get(Object(JSON.parse(line)), "port")
      if (typeof port !== "number") return reject(new Error(`server-workers said ${line}`))
      resolve({
        port,
        pid: server.pid ?? 0,
        stop: async () => {
          server.kill("SIGKILL")
          await exited
        }
      })
    })
    server.on("error", reject)
    server.on("exit", (code, signal) => {
      clearTimeout(timer)
      children.delete(server)
      if (options.verbose && stderr !== "") process.stderr.write(`[${impl} server ×${workers}] ${stderr}`)
      reject(new Error(`server-workers exited (${String(code ?? signal)}) before listening: ${stderr.trim().split("\n")[0] ?? ""}`))
    })
  })

/**
 * Node's compile cache (V8 code cache) for the children, fresh for this
 * invocation: every Effect client child otherwise spends about half a
 * second compiling `effect` and the library before its warm-up, and an
 * invocation starts over a hundred of them. It changes how soon a child
 * starts; its timed section still comes after its own warm-up.
 */
const compileCache = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-tcp-bench-"))
process.on("exit", () => Fs.rmSync(compileCache, { recursive: true, force: true }))

/** Runs one client child for one (implementation, workload, run); at most `limitMs`. */
const runClient = (job: Job, cpu: string | undefined, limitMs: number): Promise<Result> =>
  new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_COMPILE_CACHE: compileCache }
    if (options["cpu-prof"] !== undefined) env["BENCH_CPU_PROF"] = Path.resolve(options["cpu-prof"])
    if (options["heap-prof"] !== undefined) env["BENCH_HEAP_PROF"] = Path.resolve(options["heap-prof"])
    const client = job.servePort === undefined ? clientFile[job.impl] : "load-generator.ts"
    const [file, args] = command(["--expose-gc", Path.join(here, client), JSON.stringify(job)], cpu)
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], env })
    children.add(child)
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text))
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text))
    const timer = setTimeout(() => child.kill("SIGKILL"), limitMs)
    child.on("error", reject)
    child.on("exit", (code, signal) => {
      clearTimeout(timer)
      children.delete(child)
      if (options.verbose && stderr !== "") process.stderr.write(`[${job.impl} ${job.workload}] ${stderr}`)
      const line = stdout.trim().split("\n").pop() ?? ""
      if (code === 0 && line.startsWith("{")) return resolve(JSON.parse(line) as Result)
      const why = signal === "SIGKILL" ? `killed after ${limitMs} ms` : `exit ${String(code ?? signal)}`
      reject(new Error(`${why}: ${stderr.trim().split("\n").slice(0, 3).join(" | ")}`))
    })
  })

/**
 * The workers rows' load generator in C (`load-generator.c`), compiled once
 * for this invocation with `cc -O2`; undefined (then `load-generator.ts`
 * runs) when there is no compiler or it fails.
 */
const compileLoadGenerator = (): string | undefined => {
  const binary = Path.join(compileCache, "load-generator")
  const built = spawnSync("cc", ["-O2", "-o", binary, Path.join(here, "load-generator.c")], { encoding: "utf8" })
  if (built.status === 0) return binary
  process.stderr.write(`warning: cc could not build load-generator.c (${built.error?.message ?? built.stderr.trim()}); the workers rows use load-generator.ts\n`)
  return undefined
}

/** Runs the C load generator for a workers row's job (against `job.servePort`) on `cpu`; at most `limitMs`. */
const runLoadGenerator = (binary: string, job: Job, cpu: string | undefined, limitMs: number): Promise<Result> =>
  new Promise((resolve, reject) => {
    const p = job.params
    const argv = [job.servePort, p.workerConnections, p.workerWarmup, p.workerRequests, job.servePid].map(String)
    const pinned = cpu === undefined ? [] : ["taskset", "-c", cpu]
    const [file, ...args] = [...pinned, ...limitPrefix, binary, ...argv]
    const child = spawn(file ?? binary, args, { stdio: ["ignore", "pipe", "pipe"] })
    children.add(child)
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text))
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text))
    const timer = setTimeout(() => child.kill("SIGKILL"), limitMs)
    child.on("error", reject)
    child.on("exit", (code, signal) => {
      clearTimeout(timer)
      children.delete(child)
      const [elapsedMs, p50us, p99us, cpuPerOp, serverCpuPerOp] = stdout.trim().split(" ").map(Number)
      if (code === 0 && elapsedMs !== undefined && elapsedMs > 0) {
        const metrics: Record<string, number> = { p50us: p50us ?? Number.NaN, p99us: p99us ?? Number.NaN }
        metrics["cpuPerOp"] = cpuPerOp ?? Number.NaN
        if (serverCpuPerOp !== undefined && serverCpuPerOp >= 0) metrics["serverCpuPerOp"] = serverCpuPerOp
        return resolve({ value: p.workerRequests / (elapsedMs / 1000), metrics, elapsedMs })
      }
      const why = signal === "SIGKILL" ? `killed after ${limitMs} ms` : `exit ${String(code ?? signal)}`
      reject(new Error(`load generator ${why}: ${stderr.trim().split("\n")[0] ?? ""}`))
    })
  })

/**
 * Where a workers row's server and load generator run: with split
 * pinning, one worker on the clients' core and the load generator on the
 * peer's (which has nothing to do in these rows); two workers are not
 * pinned (they need both cores), nor then is the load generator.
 */
const serverPinning = (workers: number): { server: string | undefined; loadGenerator: string | undefined } =>
  workers === 1 && pinning.peer !== undefined && pinning.client !== undefined && pinning.peer !== pinning.client
    ? { server: pinning.client, loadGenerator: pinning.peer }
    : { server: undefined, loadGenerator: undefined }

// --------------------------------------------------------------- statistics

interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly runs: number
}

const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] ?? Number.NaN : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2
}

const summarize = (xs: ReadonlyArray<number>): Summary | undefined =>
  xs.length === 0 ? undefined : { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs.length }

const fmt = (x: number): string => {
  const a = Math.abs(x)
  if (!Number.isFinite(x)) return "?"
  if (a >= 1e6) return `${(x / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`
  if (a >= 1e4) return `${(x / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`
  if (a >= 100) return x.toFixed(0)
  if (a >= 10) return x.toFixed(1)
  return x.toFixed(2)
}

// ------------------------------------------------------------------ targets

interface TableRow {
  readonly workload: Workload
  readonly title: string
  readonly figure: string
  readonly unit: string
  readonly divisor: number
  readonly baseline: Workload
  readonly cells: Readonly<Record<string, (Summary & { readonly ratio: number | undefined }) | null>>
}

/**
 * The issue's targets for effect-tcp, checked against this invocation's
 * medians. Informational only: nothing fails on timing.
 */
interface Target {
  readonly text: string
  readonly workload: Workload
  readonly figure: string
  /** Compare the ratio to raw node:net (or to `against`), or the absolute median (in the figure's raw unit). */
  readonly on: "ratio" | "value"
  /** For `on: "ratio"`: the cell to divide by, when not raw node:net's on the workload's baseline. */
  readonly against?: { readonly impl: Impl; readonly workload: Workload }
  readonly op: ">=" | "<="
  readonly limit: number
  readonly show?: (median: number) => string
}

/** effect-tcp's median of `figure` on `workload` divided by raw's (on the workload's baseline), against `limit`. */
const vsRaw = (text: string, workload: Workload, op: ">=" | "<=", limit: number, figure = "value"): Target => ({
  text,
  workload,
  figure,
  on: "ratio",
  op,
  limit
})

/** As `vsRaw`, divided by `impl`'s median on `against` (by default the same workload). */
const vsCell = (
  text: string,
  workload: Workload,
  impl: Impl,
  op: ">=" | "<=",
  limit: number,
  figure = "value",
  against: Workload = workload
): Target => ({ ...vsRaw(text, workload, op, limit, figure), against: { impl, workload: against } })

// #14's targets: every workload ≥ 1.1× effect/socket with heap and idle RSS no
// higher than its, and these against raw node:net.
const targets: ReadonlyArray<Target> = [
  vsCell("ping-pong ≥ 1.1× effect/socket", "pingpong", "socket", ">=", 1.1),
  vsCell("  same, client on the peer's core", "pingpong-1core", "socket", ">=", 1.1),
  vsCell("bulk send ≥ 1.1× effect/socket", "bulk-send", "socket", ">=", 1.1),
  vsCell("bulk recv(65536) ≥ 1.1× effect/socket", "bulk-recv", "socket", ">=", 1.1),
  vsCell("connects sequential ≥ 1.1× effect/socket", "connect-seq", "socket", ">=", 1.1),
  vsCell("connects 64 in flight ≥ 1.1× effect/socket", "connect-par", "socket", ">=", 1.1),
  vsCell("heap per round trip ≤ effect/socket's", "pingpong-1core", "socket", "<=", 1, "heapPerOp"),
  vsCell("heap per MiB received (recv) ≤ effect/socket's", "bulk-recv", "socket", "<=", 1, "heapPerMiB"),
  vsCell("heap per MiB sent ≤ effect/socket's", "bulk-send", "socket", "<=", 1, "heapPerMiB"),
  vsCell("heap per connect ≤ effect/socket's", "connect-seq", "socket", "<=", 1, "heapPerOp"),
  vsCell("RSS per idle connection ≤ effect/socket's", "idle", "socket", "<=", 1),
  vsRaw("ping-pong ≥ 0.9× raw, client on the peer's core", "pingpong-1core", ">=", 0.9),
  vsRaw("  same, across cores", "pingpong", ">=", 0.9),
  vsRaw("bulk recv(65536) ≥ 1.0× raw", "bulk-recv", ">=", 1.0),
  vsRaw("bulk send ≥ 1.0× raw", "bulk-send", ">=", 1.0),
  vsRaw("connects ≥ 0.8× raw, sequential", "connect-seq", ">=", 0.8),
  vsRaw("connects ≥ 0.8× raw, 64 in flight", "connect-par", ">=", 0.8),
  vsRaw("bulk recvInto ≥ 1.3× raw 'data' events", "bulk-recv-into", ">=", 1.3),
  vsRaw("lines/s, recvUntil ≥ 1.0× raw", "lines", ">=", 1.0),
  vsCell("lines/s, recvUntil ≥ 1.5× effect/socket", "lines", "socket", ">=", 1.5),
  vsRaw("lines/s, TcpMessage.crlf ≥ 1.0× raw", "lines-crlf", ">=", 1.0),
  vsCell("lines/s, TcpMessage.crlf ≥ 1.5× effect/socket", "lines-crlf", "socket", ">=", 1.5, "value", "lines"),
  vsRaw("lines/s, TcpMessage.crlf stream ≥ 1.0× raw", "lines-stream", ">=", 1.0),
  vsCell("lines/s, TcpMessage.crlf stream ≥ 1.5× effect/socket", "lines-stream", "socket", ">=", 1.5, "value", "lines"),
  vsCell("requests/s, pool ≥ 5× a connect per request", "request-pool", "tcp", ">=", 5, "value", "request-connect"),
  vsRaw("TLS ping-pong ≥ 0.9× raw node:tls", "tls-pingpong", ">=", 0.9),
  vsRaw("TLS bulk recvInto ≥ 0.9× raw node:tls", "tls-bulk-recv-into", ">=", 0.9),
  vsCell("serve echo, 2 workers ≥ 1.7× 1 worker", "workers-2", "tcp", ">=", 1.7, "value", "workers-1")
]

/** The median of one figure for (implementation, workload) in this invocation, when it has runs. */
type MedianOf = (impl: Impl, workload: Workload, figure: string) => number | undefined

const targetReport = (medianOf: MedianOf): Array<string> => {
  const lines = ["effect-tcp against the issue's targets (informational; medians of this invocation):"]
  for (const target of targets) {
    const workload = workloads.find((w) => w.id === target.workload)
    const median = medianOf("tcp", target.workload, target.figure)
    if (workload === undefined || median === undefined) continue
    const against = target.against ?? { impl: "raw", workload: workload.baseline }
    const divisor = target.on === "ratio" ? medianOf(against.impl, against.workload, target.figure) : 1
    if (divisor === undefined || divisor === 0) continue
    const measured = median / divisor
    const met = target.op === ">=" ? measured >= target.limit : measured <= target.limit
    const shown = target.on === "ratio" ? `${measured.toFixed(2)}×` : (target.show ?? fmt)(measured)
    lines.push(`  ${met ? "met    " : "not met"}  ${target.text.padEnd(50)} ${shown}`)
  }
  return lines
}

// --------------------------------------------------------------------- main

interface RunRecord {
  readonly impl: Impl
  readonly workload: Workload
  readonly run: number
  readonly result?: Result
  readonly error?: string
  /** Wall time of the whole run (listeners, server, child start, warm-up, timed section), ms: what a cell costs the budget. */
  readonly wallMs: number
}

const cpuModel = (): string => {
  try {
    const info = Fs.readFileSync("/proc/cpuinfo", "utf8")
    return /model name\s*:\s*(.+)/.exec(info)?.[1]?.trim() ?? Os.cpus()[0]?.model ?? "unknown"
  } catch {
    return Os.cpus()[0]?.model ?? "unknown"
  }
}

const machine = {
  cpu: cpuModel(),
  cores: Os.availableParallelism(),
  memoryGiB: Math.round(Os.totalmem() / 2 ** 30),
  node: process.version,
  os: `${Os.type()} ${Os.release()} ${Os.arch()}`,
  date: new Date().toISOString()
}

const main = async () => {
  console.log("effect-tcp bench: raw node:net vs effect-tcp vs effect/socket on 127.0.0.1")
  console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB; ${machine.os}`)
  console.log(`node ${machine.node}; ${machine.date}; ${runs} runs per cell, each a fresh child process; ${pinning.text}`)
  console.log("")

  const tlsFiles = selected.some((w) => w.tls === true) ? makeTlsFiles() : undefined
  const loadGenerator = selected.some((w) => w.workers !== undefined) ? compileLoadGenerator() : undefined
  const peer = await startPeer(tlsFiles)
  const records: Array<RunRecord> = []
  let skipped = 0
  try {
    for (let run = 1; run <= runs; run++) {
      const roundStart = performance.now()
      for (const workload of selected) {
        for (const impl of workload.impls) {
          if (!takesPart(workload, impl)) continue
          if (performance.now() - started > budgetMs) {
            skipped += 1
            continue
          }
          const runStart = performance.now()
          const ports = await peer.open()
          const base: Job = { impl, workload: workload.id, host: HOST, ports, params }
          const placed = workload.workers === undefined ? undefined : serverPinning(workload.workers)
          const server = workload.workers === undefined ? undefined : await startServer(impl, workload.workers, placed?.server).catch(
            (error: unknown) => error instanceof Error ? error : new Error(String(error))
          )
          try {
            if (server instanceof Error) throw server
            const job: Job = {
              ...base,
              ...(workload.tls === true && tlsFiles !== undefined ? { tls: tlsFiles } : {}),
              ...(server === undefined ? {} : { servePort: server.port, servePid: server.pid })
            }
            const cpu = placed !== undefined
              ? placed.loadGenerator
              : workload.sameCore === true
              ? pinning.peer
              : pinning.client
            const result = server !== undefined && loadGenerator !== undefined
              ? await runLoadGenerator(loadGenerator, job, cpu, 30_000)
              : await runClient(job, cpu, 30_000)
            records.push({ impl, workload: workload.id, run, result, wallMs: performance.now() - runStart })
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error)
            records.push({ impl, workload: workload.id, run, error: message, wallMs: performance.now() - runStart })
            process.stderr.write(`  ${implNames[impl]} ${workload.id} run ${run}: ${message}\n`)
          } finally {
            if (server !== undefined && !(server instanceof Error)) await server.stop()
            await peer.close()
          }
        }
      }
      process.stderr.write(`round ${run}/${runs} done in ${((performance.now() - roundStart) / 1000).toFixed(1)} s\n`)
    }
  } finally {
    peer.stop()
  }

  // Per (workload, impl, figure) summaries.
  const figureValues = (impl: Impl, workload: Workload, key: string): Array<number> =>
    records
      .filter((r) => r.impl === impl && r.workload === workload && r.result !== undefined)
      .map((r) => (key === "value" ? r.result?.value : r.result?.metrics[key]) ?? Number.NaN)
      .filter((x) => Number.isFinite(x))

  const columns = impls.filter(wanted)
  const header = ["workload", "figure", ...columns.map((impl) => implNames[impl])]
  const lines: Array<Array<string>> = []
  const table: Array<TableRow> = []
  for (const workload of selected) {
    workload.figures.forEach((figure, index) => {
      const divisor = figure.divisor ?? 1
      const raw = summarize(figureValues("raw", workload.baseline, figure.key))
      const cells = columns.map((impl) => {
        const source = impl === "raw" ? workload.baseline : workload.id
        if (impl !== "raw" && !workload.impls.includes(impl)) {
          return { impl, text: workload.notRun?.includes(impl) === true ? "not run" : "—" }
        }
        if (workload.onDemand?.includes(impl) === true && !takesPart(workload, impl)) return { impl, text: "not run" }
        const s = summarize(figureValues(impl, source, figure.key))
        if (s === undefined) return { impl, text: "n/a" }
        const ratio = impl !== "raw" && raw !== undefined && raw.median !== 0 ? s.median / raw.median : undefined
        const text = `${fmt(s.median / divisor)} (${fmt(s.min / divisor)}–${fmt(s.max / divisor)})` +
          (ratio === undefined ? "" : ` ${ratio.toFixed(2)}×`)
        return { impl, text, summary: s, ratio }
      })
      lines.push([index === 0 ? workload.title : "", figure.unit, ...cells.map((c) => c.text)])
      table.push({
        workload: workload.id,
        title: workload.title,
        figure: figure.key,
        unit: figure.unit,
        divisor,
        baseline: workload.baseline,
        cells: Object.fromEntries(
          cells.map((c) => [c.impl, "summary" in c && c.summary !== undefined ? { ...c.summary, ratio: c.ratio } : null])
        )
      })
    })
  }

  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)))
  const row = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ").trimEnd()
  console.log(row(header))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  let previous = ""
  for (const [i, line] of lines.entries()) {
    if (i > 0 && line[0] !== "" && previous !== "") console.log("")
    console.log(row(line))
    previous = line[0] ?? previous
  }

  console.log("")
  console.log(targetReport((impl, workload, key) => summarize(figureValues(impl, workload, key))?.median).join("\n"))

  const elapsedS = (performance.now() - started) / 1000
  const failures = records.filter((r) => r.error !== undefined)
  console.log(`
Each cell: median over ${runs} runs (min–max), then the ratio of that median to raw node:net's
median in this invocation (rows without a raw run of their own use raw's row above: recvInto
rows against raw 'data' events). Higher is better for /s figures; lower for latency, heap, RSS.
- round-trips/s: 16-byte request, 16-byte echo, one at a time, ${n(params.pingpongCount)} timed after ${n(params.pingpongWarmup)} warm-up;
  p50/p99 of the per-round-trip latencies (send to full reply) in the timed section. raw: write
  on each 'data' event; effect-tcp: send + recv(16) (recvInto row: into one reused 16-byte
  buffer); effect/socket: writer.write + reader.pull. noDelay on for all.
  "client on the peer's core": the same, with the client pinned to the peer's CPU. On VMs a
  cross-core wake-up is slow (here it roughly doubles a round trip and makes p99 noisy), which
  hides client CPU cost; on one core each round trip costs client CPU + peer CPU, so this row
  shows client overhead undiluted.
- MiB/s: ${params.bulkBytes / MiB} MiB timed after ${params.bulkWarmupBytes / MiB} MiB warm-up on the same connection, 64 KiB chunks. send:
  client to peer, which discards and acks with 8 bytes at the end (the clock stops at the ack).
  recv: the peer writes 64 KiB chunks (one buffer, 'drain' backpressure); the clock stops at the
  last byte. raw: write + 'drain' / 'data' events; effect-tcp: send(64 KiB) / recv(65536) /
  recvInto(one reused 64 KiB buffer); effect/socket: writer.write / reader.pull.
- heap: bytes allocated on the V8 heap in the timed section, per unit, from v8.GCProfiler: per
  heap space, the growth between consecutive GCs (used before a GC − used after the previous
  one), plus the growth after the last GC. JS heap only: Buffer contents (ArrayBuffer backing
  stores) live outside it, so recv(65536)'s fresh 64 KiB per call does not show here.
- connects/s: ${n(params.connects)} connects timed after ${n(params.connectsWarmup)} warm-up, to a peer listener that ends its side
  on the client's FIN. The clock stops when the client process holds no TCP handle any more,
  so closes finishing in the background count for everyone. close: raw end() + resume();
  effect-tcp Effect.scoped(TcpClient.connect) (FIN now, the graceful rest in the background);
  effect/socket Effect.scoped(makeNet + reader) (destroySoon). abort: raw destroy(); effect-tcp
  socket.abort inside Effect.scoped.
- idle: growth of process.memoryUsage().rss from before to after opening ${n(params.idleConns)} connections (${params.inFlight} at
  a time, settled 200 ms, full GCs before both readings), per connection; nothing reading:
  raw net.connect; effect-tcp TcpClient.connect (TcpNode.layer: 64 KiB slots from a pool);
  effect/socket makeNet + reader + writer. JS heap (heapUsed) and external (off-heap memory
  V8 knows of, incl. ArrayBuffers) likewise. RSS counts only touched pages.
- lines/s: the peer sends ${n(params.linesCount)} lines of 64 bytes + CRLF as fast as it can (66 KiB writes, 'drain'
  backpressure), timed after ${n(params.linesWarmup)} warm-up; the clock stops at the last line. Every client checks
  each line's length, some lines' bytes and the count. raw: 'data' events split by hand (indexOf
  LF, a view per line, a line cut between chunks joined); effect-tcp: socket.recvUntil("\\r\\n")
  per line (crlf row: TcpMessage.crlf(socket).recv()); effect/socket: reader.pull batches as a
  Stream through Stream.decodeText, Stream.splitLines, Stream.take, Stream.runFold (a connection
  per request: splitLines may leave a CRLF's LF for the next stream).
- requests/s: 16-byte request, 16-byte echo, one at a time; a connect each (${n(params.requestConnects)}, after ${n(params.connectsWarmup)}
  warm-up): connect, send, receive, graceful close (raw end(); effect-tcp Effect.scoped), the
  clock stopping when every handle is closed as for connects/s. pool (${n(params.requests)}, after ${n(params.requestsWarmup)}): a fresh
  TcpClient.pool(address, { size: 1 }), each request in Effect.scoped(pool.get() + send +
  recv(16)) so the socket goes back at the scope's end; checked to have made 1 connection.
  Its ratio is to raw's connect-per-request row; the target line divides by effect-tcp's.
- TLS rows: as ping-pong (${n(params.tlsPingpongCount)} timed) and bulk recv, to the peer's node:tls listeners
  (TLS 1.3, a P-256 certificate for 127.0.0.1 signed by a CA made for this invocation with the
  openssl CLI). raw: tls.connect({ ca }) and 'data' events; effect-tcp: TcpClient.connect(address,
  { tls: { ca } }), send + recv(16) / recvInto(one reused 64 KiB buffer).
- echo server rows: a load generator (${loadGenerator === undefined ? "load-generator.ts, node:net" : "load-generator.c, epoll"}) keeps ${params.workerConnections} connections busy, each
  with one 16-byte request outstanding, ${n(params.workerRequests)} requests timed after ${n(params.workerWarmup)}; the server is
  1 or 2 worker threads sharing the port with reusePort (raw: node:net, a write per 'data';
  effect-tcp: TcpListener.listen({ reusePort: true }) + serve of recv(16) + send). On a 2-core
  machine the load generator takes CPU the two workers would use: its CPU µs/request times
  requests/s is its share of a core. Server CPU: the server process's user + system time in the
  timed section (/proc, 10 ms ticks) per request. ${serverPinning(1).server === undefined ? "Nothing pinned." : `1 worker pinned to CPU ${serverPinning(1).server ?? ""}, the load
  generator to CPU ${serverPinning(1).loadGenerator ?? ""}; with 2 workers nothing is pinned.`} The 2-worker target divides by effect-tcp's 1-worker row.
- —: the API has no such operation. not run: it has, but the bench leaves it out (time; its
  connects are the connect + close rows; TLS through NodeSocket.fromDuplex; NodeSocketServer).
  n/a: every run failed (see stderr / the JSON).
Peer: one raw node:net process (peer.ts) for every implementation, fresh listeners per run;
${pinning.text}. Each (implementation, workload, run) is a fresh child process.
${skipped === 0 ? "" : `Time budget (${options.budget} s) used up: ${skipped} run(s) skipped, some cells have fewer than ${runs} runs.\n`}${failures.length === 0 ? "All runs succeeded." : `${failures.length} run(s) failed: ${failures.map((f) => `${f.impl}/${f.workload}#${f.run}`).join(", ")}`}
Elapsed: ${elapsedS.toFixed(1)} s (budget: 5 minutes including npm ci).`)

  const jsonPath = Path.resolve(options.json)
  Fs.writeFileSync(
    jsonPath,
    `${JSON.stringify({ machine, runs, scale, params, elapsedS, table, records }, null, 2)}\n`
  )
  console.log(`Results written to ${Path.relative(process.cwd(), jsonPath) || jsonPath}.`)
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    killAll()
    console.error(error)
    process.exit(1)
  }
)
