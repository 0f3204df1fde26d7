/**
 * The man page's connect errnos, made by the kernel: a child process in a
 * network namespace of its own (`unshare -n`, see netns-child.ts) routes
 * documentation-range addresses into `unreachable`, `prohibit` and
 * `blackhole` routes, into no route at all and into a TUN device nobody
 * reads, takes `lo` and the TUN down, lowers the namespace's SYN retries and
 * ephemeral port range, and connects through the library to each. This file
 * checks what each connect failed with, and prints the matrix.
 *
 * As root (this machine, CI) the namespace is made for real. Elsewhere, when
 * `unshare`/`ip`/a TUN device is not available, the test skips with its
 * reason printed — except under CI, where it fails instead.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readlinkSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { TcpError } from "../../src/index.ts"
import { checkFdLeaks } from "../helpers.ts"
import { commandWorks, runProcess } from "./support.ts"

const child = fileURLToPath(new URL("./netns-child.ts", import.meta.url))

/** `unshare` arguments for a new network namespace: a user namespace too when not root. */
const unshareArgs: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-n"] : ["-n", "-r"]

/** Why a namespace with a TUN device cannot be made here, if it cannot. */
const unavailable: string | undefined = (() => {
  if (process.platform !== "linux") return `not Linux (${process.platform})`
  return commandWorks("unshare", ["--version"]) ??
    commandWorks("ip", ["-V"]) ??
    commandWorks("unshare", [...unshareArgs, "--", "ip", "tuntap", "add", "dev", "probe0", "mode", "tun"])
})()
const onCi = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false"
if (unavailable !== undefined) {
  console.log(`[faults/netns] ${onCi ? "FAILING (CI)" : "skipping"}: cannot make a network namespace: ${unavailable}`)
}

interface Report {
  readonly id: string
  readonly tag?: string
  readonly errno?: string
  readonly syscall?: string
  readonly address?: string
  readonly message?: string
  readonly ms?: number
  readonly [key: string]: unknown
}

interface Expected {
  readonly id: string
  readonly tag: string
  readonly errno: string
  /** What the namespace does to make it. */
  readonly how: string
  /** The call must not end before this many ms (how long it took is in the logged table, not asserted). */
  readonly atLeast?: number
}

const expected: ReadonlyArray<Expected> = [
  { id: "refused-loopback", tag: "ConnRefused", errno: "ECONNREFUSED", how: "127.0.0.1, closed port" },
  { id: "refused-own-address", tag: "ConnRefused", errno: "ECONNREFUSED", how: "198.51.100.1 (the TUN's own address), closed port" },
  { id: "route-unreachable", tag: "HostUnreach", errno: "EHOSTUNREACH", how: "ip route add unreachable 192.0.2.0/25" },
  { id: "route-prohibit", tag: "AccessDenied", errno: "EACCES", how: "ip route add prohibit 192.0.2.128/25" },
  { id: "route-blackhole", tag: "InvalidArgument", errno: "EINVAL", how: "ip route add blackhole 203.0.113.0/25" },
  { id: "no-route", tag: "NetUnreach", errno: "ENETUNREACH", how: "203.0.113.129: no route, no default route" },
  { id: "tun-down", tag: "NetUnreach", errno: "ENETUNREACH", how: "198.51.100.2 after ip link set ftun0 down" },
  {
    id: "tun-timeout-300ms",
    tag: "TimedOut",
    errno: "ETIMEDOUT",
    how: "SYN into a TUN nobody reads, { timeout: 300 ms }",
    atLeast: 299
  },
  {
    id: "tun-deadline-500ms",
    tag: "TimedOut",
    errno: "ETIMEDOUT",
    how: "SYN into a TUN nobody reads, { deadline: now + 500 ms }",
    atLeast: 499
  },
  { id: "tun-deadline-0", tag: "TimedOut", errno: "ETIMEDOUT", how: "deadline 0: no SYN is even sent" },
  {
    id: "kernel-syn-timeout",
    tag: "TimedOut",
    errno: "ETIMEDOUT",
    how: "deadline -1, tcp_syn_retries=1: the kernel gives up (~3 s)",
    atLeast: 2000
  },
  {
    id: "reset-after-handshake",
    tag: "ConnReset",
    errno: "ECONNRESET",
    how: "peer accepts and resets before libuv reads SO_ERROR"
  },
  {
    id: "ports-exhausted",
    tag: "AddrNotAvail",
    errno: "EADDRNOTAVAIL",
    how: "ip_local_port_range 61000 61001, third connect to one destination"
  },
  {
    id: "lo-down-ipv4",
    tag: "TimedOut",
    errno: "ETIMEDOUT",
    how: "127.0.0.1 after ip link set lo down: the SYN is dropped",
    atLeast: 299
  },
  { id: "lo-down-ipv6", tag: "AddrNotAvail", errno: "EADDRNOTAVAIL", how: "[::1] after ip link set lo down: ::1 is gone" }
]

const parseLines = (stdout: string): Array<Report> =>
  stdout.split("\n").filter((l) => l.trim().length > 0).map((l) => {
    const value: unknown = JSON.parse(l)
    assert.isObject(value, l)
    return value as Report
  })

describe("faults: kernel errnos in a network namespace", () => {
  checkFdLeaks()

  it.live.skipIf(unavailable !== undefined && !onCi)("every connect errno the namespace can produce, as its tag", () =>
    Effect.gen(function*() {
      assert.isUndefined(unavailable, `CI must be able to make a network namespace: ${unavailable}`)
      const parentNs = readlinkSync("/proc/self/ns/net")
      const started = Date.now()
      const result = yield* runProcess("unshare", [...unshareArgs, "--", process.execPath, child, parentNs], 30_000)
      const elapsed = Date.now() - started
      assert.strictEqual(result.code, 0, `child exited ${String(result.code ?? result.signal)}:\n${result.stderr}\n${result.stdout}`)
      const reports = parseLines(result.stdout)
      const byId = new Map(reports.map((r) => [r.id, r]))

      // The child really was in a namespace of its own, with only the interfaces it made.
      const ns = byId.get("namespace")
      assert.isDefined(ns, result.stdout)
      assert.notStrictEqual(ns?.["ns"], parentNs)
      assert.deepStrictEqual(ns?.["before"], ["lo"])
      assert.deepStrictEqual(ns?.["after"], ["ftun0", "lo"])
      assert.strictEqual(byId.get("end")?.id, "end", "the child ran every case")

      const rows: Array<string> = []
      for (const want of expected) {
        const got = byId.get(want.id)
        assert.isDefined(got, `no report for ${want.id}:\n${result.stdout}`)
        if (got === undefined) continue
        if (got.tag === "skipped") {
          rows.push(`| ${want.id} | ${want.errno} | skipped: ${String(got["reason"])} | | ${want.how} |`)
          continue
        }
        rows.push(`| ${want.id} | ${got.errno ?? "-"} | ${got.tag ?? "-"} | ${String(got.ms)} ms | ${want.how} |`)
        assert.strictEqual(got.tag, want.tag, `${want.id}: ${JSON.stringify(got)}`)
        assert.strictEqual(got.errno, want.errno, `${want.id}: ${JSON.stringify(got)}`)
        assert.strictEqual(got.syscall, "connect", want.id)
        assert.isString(got.address, want.id)
        assert.include(got.message ?? "", want.errno, want.id)
        if (want.atLeast !== undefined) {
          assert.isAtLeast(got.ms ?? -1, want.atLeast, `${want.id} ended before its deadline`)
        }
      }
      // Our deadline and the kernel's give-up are told apart by their message.
      assert.include(byId.get("tun-timeout-300ms")?.message ?? "", "deadline reached")
      assert.notInclude(byId.get("kernel-syn-timeout")?.message ?? "", "deadline reached")
      const exhausted = byId.get("ports-exhausted")
      assert.strictEqual(exhausted?.["opened"], 2, "two ephemeral ports, two connections")
      const leaks = byId.get("leaks")
      assert.deepInclude(leaks, { fdsLeaked: 0, inUse: 0, waiting: 0 })

      console.log(
        [
          `[faults/netns] errno matrix (namespace ${String(ns?.["ns"])}, child ran ${elapsed} ms)`,
          "| case | errno | tag | elapsed | how |",
          "|---|---|---|---|---|",
          ...rows
        ].join("\n")
      )
    }), 40_000)

  it("errnos Linux cannot produce here take the same mapping path as the reproduced ones", () => {
    // What Node's connect reports: an ErrnoException with code, errno, syscall, address and port.
    const nodeError = (code: string, errno: number) =>
      Object.assign(new Error(`connect ${code} 192.0.2.1:80`), { code, errno, syscall: "connect", address: "192.0.2.1", port: 80 })
    const cases: ReadonlyArray<readonly [string, number, string]> = [
      ["ENETDOWN", -100, "NetDown"],
      ["ENFILE", -23, "SystemFileLimit"],
      ["ENOMEM", -12, "OutOfMemory"],
      ["ENOBUFS", -105, "OutOfMemory"],
      ["EMFILE", -24, "TooManyOpenFiles"]
    ]
    for (const [code, errno, tag] of cases) {
      // The path connection.ts takes for a failed connect: fromUnknown, then narrow to ConnectError.
      const error = TcpError.narrow(TcpError.fromUnknown(nodeError(code, errno), "connect", "192.0.2.1:80"), TcpError.connectTags)
      assert.strictEqual(error._tag, tag, code)
      assert.strictEqual(error.errno, code)
      assert.strictEqual(error.syscall, "connect")
      assert.strictEqual(error.address, "192.0.2.1:80")
    }
  })
})
