/**
 * Fixtures shared by the fault suites in test/faults/: child processes with
 * a bounded life, outcome classification (success, typed error,
 * interruption, defect), and checks that every slot came back.
 */
import { assert } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import type { Layer, Scope } from "effect"
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import type { TcpClient, TcpError, TcpStorage } from "../../src/index.ts"
import { eventually, failsWith, withTcp } from "../helpers.ts"
export { failsWith, type ProcessResult, runProcess } from "../helpers.ts"

export const KiB = 1024
export const MiB = 1024 * 1024

export type Tcp = TcpClient.TcpClient | TcpStorage.TcpStorage

/** `withTcp` with the layer first, as the fault tests read best. */
export const withPool = <A, E, LE = never>(
  layer: Layer.Layer<Tcp, LE>,
  body: Effect.Effect<A, E, Tcp | Scope.Scope>
): Effect.Effect<A, E | LE> => withTcp(body, layer)


/** Whether `command args...` can be run and exits 0; else why not. */
export const commandWorks = (command: string, args: ReadonlyArray<string>): string | undefined => {
  const probe = spawnSync(command, args, { encoding: "utf8", timeout: 5000 })
  if (probe.error !== undefined) return `${command}: ${probe.error.message}`
  if (probe.status !== 0) return `${command} ${args.join(" ")} exited ${String(probe.status)}: ${probe.stderr.trim()}`
  return undefined
}

/** How an operation ended. */
export type Outcome =
  | { readonly kind: "success" }
  | { readonly kind: "interrupted" }
  | { readonly kind: "error"; readonly tag: string; readonly error: unknown }
  | { readonly kind: "defect"; readonly cause: string }

export const classify = <A, E>(exit: Exit.Exit<A, E>): Outcome => {
  if (Exit.isSuccess(exit)) return { kind: "success" }
  const cause = exit.cause
  if (Cause.hasDies(cause)) return { kind: "defect", cause: Cause.pretty(cause) }
  const failure = cause.reasons.find((r) => r._tag === "Fail")
  if (failure !== undefined && failure._tag === "Fail") {
    const error: unknown = failure.error
    const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : "untagged"
    return { kind: "error", tag, error }
  }
  if (Cause.hasInterruptsOnly(cause)) return { kind: "interrupted" }
  return { kind: "defect", cause: Cause.pretty(cause) }
}

export const sha256 = (...parts: ReadonlyArray<Uint8Array>): string => {
  const hash = createHash("sha256")
  for (const part of parts) hash.update(part)
  return hash.digest("hex")
}

/** Resident set size of this process, in bytes. */
export const rss = (): number => process.memoryUsage.rss()

/**
 * Polls `condition` every 10 ms, about `ms` on an idle machine: bounded in
 * count, so a loaded machine only makes it wait longer. Fails the test if it
 * never holds.
 */
export const waitUntil = (condition: () => boolean, what: string, ms = 5000): Effect.Effect<void> =>
  eventually(condition, what, Math.ceil(ms / 10))

/** `failsWith(make, "PeerClosed")`, narrowed: the error with the bytes that did arrive. */
export const failsPeerClosed = <A, R>(
  make: () => Effect.Effect<A, TcpError.RecvError, R>,
  label = ""
): Effect.Effect<TcpError.PeerClosed, never, R> =>
  Effect.map(
    failsWith(make, "PeerClosed", label),
    (error) => error._tag === "PeerClosed" ? error : assert.fail(`${label}: expected PeerClosed, got ${error._tag}`)
  )
