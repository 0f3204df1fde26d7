/**
 * A real `redis-server` speaking TLS only, for the TLS interop tests: found
 * on PATH and checked to be built with TLS (or not, and then the tests
 * skip), started on a free loopback port with the certificates of
 * `makeCertificates`, stopped with the scope.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { spawnSync } from "node:child_process"
import * as Tls from "node:tls"
import { closedPort } from "../helpers.ts"
import { findRedisServer, spawnRedis } from "../interop/redis-server.ts"
import type { TestCertificates } from "./certs.ts"

/**
 * `redis-server` on PATH if it was built with TLS, else undefined; when
 * undefined, prints why the tests of `suite` (e.g. "tls/redis") are skipped.
 * Synchronous, for `it.skipIf` at module load.
 *
 * The check starts it with `--port 0 --tls-port 0`: a build with TLS knows
 * the directive and exits at once as it has nowhere to listen; one without
 * TLS exits on the unknown directive.
 *
 * @example
 * ```ts
 * const redisServer = findRedisTls("tls/redis")
 * it.live.skipIf(redisServer === undefined)("PING over TLS", () => …)
 * ```
 */
export const findRedisTls = (suite: string): string | undefined => {
  const binary = findRedisServer(suite)
  if (binary === undefined) return undefined
  const probe = spawnSync(binary, ["--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"], {
    encoding: "utf8",
    timeout: 10_000
  })
  const output = `${probe.stdout ?? ""}${probe.stderr ?? ""}`
  if (output.includes("Configured to not listen anywhere")) return binary
  console.log(`[${suite}] skipping: ${binary} does not support TLS (built without BUILD_TLS?): ${output.trim()}`)
  return undefined
}

/** Whether redis asks clients for a certificate (`--tls-auth-clients`). */
export type AuthClients = "no" | "optional" | "yes"

/** A running TLS-only redis-server. */
export interface RedisTls {
  /** Its TLS port on 127.0.0.1 (it has no plaintext port). */
  readonly port: number
  /** `127.0.0.1:port`. */
  readonly address: string
}

/**
 * One TLS PING from a node:tls client trusting `certs.ca` (and presenting
 * `certs.client`, for `--tls-auth-clients yes`): true on `+PONG`, false if
 * the connection is refused, fails or says anything else. Gives up after 2 s.
 */
const pingsBack = (port: number, certs: TestCertificates): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    let reply = ""
    let finished = false
    const socket = Tls.connect({
      port,
      host: "127.0.0.1",
      servername: "localhost",
      ca: certs.ca.cert,
      cert: certs.client.cert,
      key: certs.client.key
    })
    const finish = (ok: boolean) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed(ok))
    }
    const timer = setTimeout(() => finish(false), 2000)
    socket.once("secureConnect", () => socket.write("PING\r\n"))
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString()
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"))
    })
    socket.once("error", () => finish(false))
    socket.once("close", () => finish(false))
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

/**
 * A redis-server listening with TLS only on a free port of 127.0.0.1, with
 * `certs.server` as its certificate and `certs.ca` as the CA it checks
 * client certificates against; no persistence. Ready once it answers a TLS
 * PING. Killed (and waited for) with the scope.
 *
 * @example
 * ```ts
 * const certs = yield* makeCertificates(openssl)
 * const redis = yield* startRedisTls(redisServer, certs)
 * const socket = yield* TcpClient.connect(redis.address, { tls: { serverName: "localhost", ca: certs.ca.cert } })
 * ```
 */
export const startRedisTls = (
  binary: string,
  certs: TestCertificates,
  options: { readonly authClients?: AuthClients } = {}
): Effect.Effect<RedisTls, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* closedPort
    yield* spawnRedis({
      binary,
      port,
      args: [
        "--port",
        "0",
        "--tls-port",
        String(port),
        "--tls-cert-file",
        certs.server.certFile,
        "--tls-key-file",
        certs.server.keyFile,
        "--tls-ca-cert-file",
        certs.ca.certFile,
        "--tls-auth-clients",
        options.authClients ?? "no"
      ],
      dir: certs.dir,
      // Ready when a TLS PING (with the client certificate) gets +PONG, not merely when the port accepts.
      ready: pingsBack(port, certs)
    })
    return { port, address: `127.0.0.1:${port}` }
  })
