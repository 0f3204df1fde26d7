/**
 * The namespace half of test/faults/netns.test.ts. Run only as
 *
 *     unshare -n -- node test/faults/netns-child.ts <parent's /proc/self/ns/net link>
 *
 * It first proves it is inside a network namespace of its own (its
 * /proc/self/ns/net differs from the parent's, and /proc/net/dev, which lists
 * the current namespace's interfaces, lists only `lo`), and exits with code 3
 * and a message otherwise: nothing below may ever touch the host's network.
 * Then it builds the network the errno matrix needs, inside that namespace:
 *
 *   lo                 up (later down, for the last cases)
 *   ftun0              a TUN device nobody reads, 198.51.100.1/24: SYNs to
 *                      198.51.100.0/24 vanish
 *   192.0.2.0/25       `unreachable` route   → EHOSTUNREACH
 *   192.0.2.128/25     `prohibit` route      → EACCES
 *   203.0.113.0/25     `blackhole` route     → EINVAL (what Linux really says)
 *   203.0.113.128/25   no route at all       → ENETUNREACH (no default route)
 *
 * and connects through the library to each, printing one JSON line per case
 * (`{ "id", "tag", "errno", "syscall", "message", "ms", ... }`). Sysctls it
 * changes (`tcp_syn_retries`, `ip_local_port_range`) are the namespace's own.
 * Only the documentation ranges and loopback are ever addressed. Every wait
 * is bounded; the whole run takes about 4 s.
 */
import { Effect, Exit, Fiber, Scope } from "effect"
import { createHook } from "node:async_hooks"
import { spawn, spawnSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs"
import * as Net from "node:net"
import { Deadline, TcpClient, TcpNode, TcpStorage } from "../../src/index.ts"
import type { TcpError } from "../../src/index.ts"

const TUN = "ftun0"

const refuse = (why: string): never => {
  process.stderr.write(`netns-child: refusing to run: ${why}\n`)
  process.exit(3)
}

const line = (value: object): void => {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

/** The interfaces of the current network namespace, from /proc/net/dev. */
const interfaces = (): Array<string> =>
  readFileSync("/proc/net/dev", "utf8")
    .split("\n")
    .slice(2)
    .map((row) => row.split(":")[0]?.trim() ?? "")
    .filter((name) => name.length > 0)
    .sort()

/** Runs `ip ...` (or another command) synchronously; any failure ends the run. */
const run = (command: string, ...args: Array<string>): string => {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 5000 })
  if (result.error !== undefined || result.status !== 0) {
    return refuse(`${command} ${args.join(" ")} failed: ${String(result.error ?? result.stderr)}`)
  }
  return result.stdout
}

/** Writes one of this namespace's sysctls (/proc/sys/net is per namespace). */
const sysctl = (key: string, value: string): void => {
  writeFileSync(`/proc/sys/${key.replaceAll(".", "/")}`, value)
}

// ------------------------------------------------------------ the namespace

const parentNs = process.argv[2]
const ownNs = readlinkSync("/proc/self/ns/net")
if (parentNs === undefined || !/^net:\[\d+\]$/.test(parentNs)) refuse("usage: netns-child.ts <parent netns link>")
if (ownNs === parentNs) refuse(`still in the parent's network namespace ${ownNs}`)
const before = interfaces()
if (before.join(",") !== "lo") refuse(`/proc/net/dev lists ${before.join(", ")}: not a fresh namespace`)

run("ip", "link", "set", "lo", "up")
run("ip", "tuntap", "add", "dev", TUN, "mode", "tun")
run("ip", "link", "set", TUN, "up")
run("ip", "addr", "add", "198.51.100.1/24", "dev", TUN)
run("ip", "route", "add", "unreachable", "192.0.2.0/25")
run("ip", "route", "add", "prohibit", "192.0.2.128/25")
run("ip", "route", "add", "blackhole", "203.0.113.0/25")
const after = interfaces()
if (after.join(",") !== `${TUN},lo`) refuse(`/proc/net/dev lists ${after.join(", ")} after setup`)
// One SYN retransmission, then the kernel gives up (about 3 s): its own ETIMEDOUT.
sysctl("net.ipv4.tcp_syn_retries", "1")
line({
  id: "namespace",
  ns: ownNs,
  parentNs,
  before,
  after,
  routes: run("ip", "route", "show").trim().split("\n")
})

// ------------------------------------------------------------------ probes

const openFds = () => readdirSync("/proc/self/fd").length
const ipv6 = existsSync("/proc/net/if_inet6") &&
  readFileSync("/proc/net/if_inet6", "utf8").split("\n").some((row) => row.startsWith("0".repeat(31) + "1"))

/** The outcome of one connect, as a JSON-ready record. */
const outcome = (id: string, exit: Exit.Exit<unknown, TcpError.ConnectError>, ms: number, extra: object = {}) => {
  if (Exit.isSuccess(exit)) return { id, tag: "connected", ms, ...extra }
  const failure = exit.cause.reasons[0]
  if (failure === undefined || failure._tag !== "Fail") {
    return { id, tag: "defect", cause: String(exit.cause), ms, ...extra }
  }
  const e = failure.error
  return { id, tag: e._tag, errno: e.errno, syscall: e.syscall, address: e.address, message: e.message, ms, ...extra }
}

/** Connects once (the socket, if any, is aborted at once) and reports how it went. */
const probe = (id: string, address: string, options: TcpClient.ConnectOptions & { readonly tls?: undefined }, extra: object = {}) =>
  Effect.gen(function*() {
    const start = Date.now()
    const exit = yield* Effect.exit(
      Effect.scoped(Effect.flatMap(TcpClient.connect(address, options), (socket) => socket.abort))
    )
    const report = outcome(id, exit, Date.now() - start, extra)
    line(report)
    return report
  })

/** A plain node:net listener on 127.0.0.1 (in this namespace). */
const listener = Effect.acquireRelease(
  Effect.callback<Net.Server>((resume) => {
    const server = Net.createServer((socket) => {
      socket.on("error", () => {})
      socket.on("end", () => socket.end())
      socket.resume()
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

const closedPort = Effect.scoped(listener)

/** Blocks this process's event loop (a busy process), without spinning. */
const blockLoop = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/**
 * A peer (another process, in this namespace) that completes the handshake
 * and resets at once. The next `connect()` this process issues is followed
 * by 300 ms in which its event loop is busy (armed through async_hooks: the
 * TCPCONNECTWRAP of that connect), so the reset lands before libuv reads the
 * socket's SO_ERROR: connect itself fails with ECONNRESET.
 */
const resettingPeer = Effect.acquireRelease(
  Effect.sync(() =>
    spawn(process.execPath, [
      "-e",
      `const s = require("node:net").createServer((c) => { c.on("error", () => {}); c.resetAndDestroy(); });
       s.listen(0, "127.0.0.1", () => process.stdout.write(s.address().port + "\\n"));
       setTimeout(() => process.exit(0), 20000);`
    ], { stdio: ["ignore", "pipe", "inherit"] })
  ),
  (child) => Effect.sync(() => child.kill("SIGKILL"))
).pipe(
  Effect.flatMap((child) =>
    Effect.callback<number, Error>((resume) => {
      child.stdout.once("data", (data: Buffer) => resume(Effect.succeed(Number(data.toString().trim()))))
      child.once("error", (e) => resume(Effect.fail(e)))
    })
  ),
  Effect.timeout("5 seconds")
)

let armed = false
createHook({
  init(_id, type) {
    if (armed && type === "TCPCONNECTWRAP") {
      armed = false
      process.nextTick(() => blockLoop(300))
    }
  }
}).enable()

// ------------------------------------------------------------------- cases

/**
 * Node keeps a /dev/null descriptor open after its first `spawn` with an
 * ignored stdio: spawn once before counting descriptors.
 */
const warmUpSpawn = Effect.callback<void>((resume) => {
  spawn(process.execPath, ["-e", "0"], { stdio: ["ignore", "pipe", "inherit"] }).once("close", () => resume(Effect.void))
})

const program = Effect.gen(function*() {
  yield* warmUpSpawn
  const fdBaseline = openFds()

  // The kernel's own give-up (deadline -1): runs alongside the others.
  const kernelTimeout = yield* Effect.forkChild(
    probe("kernel-syn-timeout", "198.51.100.3:80", { deadline: Deadline.never }, { deadline: -1, synRetries: 1 })
  )

  const closed = yield* closedPort
  yield* probe("refused-loopback", `127.0.0.1:${closed}`, { timeout: "2 seconds" })
  yield* probe("refused-own-address", `198.51.100.1:${closed}`, { timeout: "2 seconds" })
  yield* probe("route-unreachable", "192.0.2.1:80", { timeout: "2 seconds" }, { route: "unreachable 192.0.2.0/25" })
  yield* probe("route-prohibit", "192.0.2.129:80", { timeout: "2 seconds" }, { route: "prohibit 192.0.2.128/25" })
  yield* probe("route-blackhole", "203.0.113.1:80", { timeout: "2 seconds" }, { route: "blackhole 203.0.113.0/25" })
  yield* probe("no-route", "203.0.113.129:80", { timeout: "2 seconds" }, { route: "none" })

  // SYNs into the TUN nobody reads: the call's own deadline ends it.
  yield* probe("tun-timeout-300ms", "198.51.100.2:80", { timeout: "300 millis" }, { deadlineMs: 300 })
  const deadline = yield* Deadline.after("500 millis")
  yield* probe("tun-deadline-500ms", "198.51.100.2:443", { deadline }, { deadlineMs: 500 })
  yield* probe("tun-deadline-0", "198.51.100.2:80", { deadline: Deadline.immediate }, { deadlineMs: 0 })

  // A reset right after the handshake, before connect reports success. The
  // peer process must get the CPU within the 300 ms window: on a loaded
  // machine that may take another try (at most 3).
  yield* Effect.scoped(Effect.gen(function*() {
    const port = yield* resettingPeer
    for (let attempt = 1; attempt <= 3; attempt++) {
      armed = true
      const start = Date.now()
      const exit = yield* Effect.exit(
        Effect.scoped(Effect.flatMap(TcpClient.connect(`127.0.0.1:${port}`, { timeout: "2 seconds" }), (s) => s.abort))
      )
      armed = false
      const report = outcome("reset-after-handshake", exit, Date.now() - start, { attempt })
      if (report.tag === "ConnReset" || attempt === 3) {
        line(report)
        break
      }
    }
  }))

  yield* Fiber.join(kernelTimeout)

  // Every ephemeral port to one destination in use: EADDRNOTAVAIL.
  yield* Effect.scoped(Effect.gen(function*() {
    const port = yield* listener
    sysctl("net.ipv4.ip_local_port_range", "61000 61001")
    const held = yield* Scope.make()
    let opened = 0
    for (let i = 0; i < 5; i++) {
      const start = Date.now()
      const exit = yield* Effect.exit(TcpClient.connect(`127.0.0.1:${port}`, { timeout: "2 seconds" }).pipe(Scope.provide(held)))
      if (Exit.isSuccess(exit)) {
        opened += 1
        continue
      }
      line(outcome("ports-exhausted", exit, Date.now() - start, { portRange: "61000 61001", opened }))
      break
    }
    yield* Scope.close(held, Exit.fail("done"))
    sysctl("net.ipv4.ip_local_port_range", "32768 60999")
  }))

  // Descriptors and slots are all back before the links go down.
  for (let i = 0; i < 300 && (yield* TcpStorage.stats).inUse > 0; i++) yield* Effect.sleep("10 millis")
  for (let i = 0; i < 300 && openFds() > fdBaseline; i++) yield* Effect.sleep("10 millis")
  const stats = yield* TcpStorage.stats
  line({ id: "leaks", fdsLeaked: Math.max(0, openFds() - fdBaseline), inUse: stats.inUse, waiting: stats.waiting })

  // The TUN link down: its routes are gone.
  run("ip", "link", "set", TUN, "down")
  yield* probe("tun-down", "198.51.100.2:80", { timeout: "2 seconds" }, { link: `${TUN} down` })

  // Loopback down: IPv4 SYNs are dropped silently; IPv6 loses ::1.
  const port = closed
  run("ip", "link", "set", "lo", "down")
  yield* probe("lo-down-ipv4", `127.0.0.1:${port}`, { timeout: "300 millis" }, { link: "lo down", deadlineMs: 300 })
  if (ipv6) yield* probe("lo-down-ipv6", `[::1]:${port}`, { timeout: "2 seconds" }, { link: "lo down" })
  else line({ id: "lo-down-ipv6", tag: "skipped", reason: "no IPv6 loopback in this kernel" })
  line({ id: "end" })
})

Effect.runPromise(
  program.pipe(Effect.provide(TcpNode.layerWith({ slots: 16, bufferSize: 4 * 1024 })))
).then(
  () => process.exit(0),
  (cause: unknown) => {
    process.stderr.write(`netns-child: ${String(cause)}\n`)
    process.exit(1)
  }
)
