/**
 * Certificates for the TLS tests, made at test time by the `openssl` CLI in a
 * temporary directory that is removed with the scope: a CA, and certificates
 * it signed (or not) for the cases a TLS client must accept or reject.
 *
 * EC P-256 keys: the whole set takes a few tens of milliseconds, so each test
 * file makes its own and nothing is cached. Needs OpenSSL 3.0 or later
 * (`req -CA`, `-noenc`); `findOpenssl` says why the tests skip otherwise.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { findOnPath, runProcess } from "../helpers.ts"

/** One certificate and its private key, as PEM files and as PEM text. */
export interface CertificateFiles {
  /** Path of the certificate (PEM). */
  readonly certFile: string
  /** Path of the unencrypted private key (PEM, EC P-256). */
  readonly keyFile: string
  /** The certificate's PEM text. */
  readonly cert: string
  /** The private key's PEM text. */
  readonly key: string
}

/** Everything `makeCertificates` makes; every file lives in `dir`. */
export interface TestCertificates {
  /** The temporary directory, removed when the scope ends. */
  readonly dir: string
  /** The CA (CN=effect-tcp-test-ca, self-signed): what clients and servers trust. */
  readonly ca: CertificateFiles
  /** CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1, serverAuth, signed by `ca`. */
  readonly server: CertificateFiles
  /** CN=effect-tcp-test-client, clientAuth, signed by `ca`: for `requestCert` servers. */
  readonly client: CertificateFiles
  /** CN=localhost with the same SANs as `server`, but self-signed (no CA). */
  readonly selfSigned: CertificateFiles
  /** CN=other.example, SAN DNS:other.example only, signed by `ca`: the wrong name for localhost. */
  readonly otherName: CertificateFiles
  /** Like `server` (localhost, signed by `ca`) but valid only from 2020-01-01 to 2020-01-02 UTC. */
  readonly expired: CertificateFiles
}

/** The name `otherName` is issued for. */
export const OTHER_NAME = "other.example"

/** When `expired` starts being valid (UTC, as `openssl ca -startdate` takes it). */
export const EXPIRED_NOT_BEFORE = "20200101000000Z"

/** When `expired` stops being valid (UTC, as `openssl ca -enddate` takes it). */
export const EXPIRED_NOT_AFTER = "20200102000000Z"

const LOCALHOST_NAMES = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"

/**
 * The `openssl` CLI on PATH if it is OpenSSL 3.0 or later, else undefined;
 * when undefined, prints why the tests of `suite` (e.g. "tls/fixtures") are
 * skipped. Synchronous, for `it.skipIf` at module load.
 *
 * @example
 * ```ts
 * const openssl = findOpenssl("tls/redis")
 * it.live.skipIf(openssl === undefined)("…", () => …)
 * ```
 */
export const findOpenssl = (suite: string): string | undefined => {
  const found = findOnPath("openssl", suite, "install it, e.g. apt-get install openssl")
  if (found === undefined) return undefined
  let version = ""
  try {
    version = execFileSync(found, ["version"], { encoding: "utf8", timeout: 10_000 }).trim()
  } catch (error) {
    console.log(`[${suite}] skipping: \`${found} version\` failed: ${String(error)}`)
    return undefined
  }
  const major = /^OpenSSL (\d+)\./.exec(version)?.[1]
  if (major === undefined || Number(major) < 3) {
    console.log(`[${suite}] skipping: the certificates need OpenSSL 3.0 or later, found "${version}"`)
    return undefined
  }
  return found
}

/**
 * Runs `openssl` with `args` (no shell), failing with its output when it
 * exits non-zero or takes more than 20 s.
 */
const run = (openssl: string, args: ReadonlyArray<string>): Effect.Effect<void, Error> =>
  Effect.flatMap(runProcess(openssl, args, 20_000), (result) =>
    result.code === 0
      ? Effect.void
      : Effect.fail(
        new Error(`openssl ${args.join(" ")} exited ${result.code ?? result.signal}: ${result.stderr}${result.stdout}`)
      ))

/**
 * Our own configuration, so the system's openssl.cnf adds no extension (the
 * Debian one would make every `req -x509` a CA), and `openssl ca` has the
 * database it insists on (used only for the expired certificate).
 */
const configText = (dir: string): string =>
  [
    "[req]",
    "distinguished_name = dn",
    "[dn]",
    "[ca]",
    "default_ca = test_ca",
    "[test_ca]",
    `database = ${join(dir, "index.txt")}`,
    `new_certs_dir = ${dir}`,
    "rand_serial = yes",
    "default_md = sha256",
    "policy = any_name",
    "copy_extensions = copy",
    "unique_subject = no",
    "[any_name]",
    "commonName = supplied",
    ""
  ].join("\n")

/**
 * Makes the CA and every certificate of `TestCertificates` with `openssl`
 * (from `findOpenssl`) in a fresh temporary directory, removed when the
 * scope ends. The CA and the good certificates are valid for two days from now.
 *
 * @example
 * ```ts
 * const certs = yield* makeCertificates(openssl)
 * const server = tls.createServer({ cert: certs.server.cert, key: certs.server.key })
 * tls.connect({ port, host: "127.0.0.1", servername: "localhost", ca: certs.ca.cert })
 * ```
 */
export const makeCertificates = (openssl: string): Effect.Effect<TestCertificates, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.try({
        try: () => mkdtempSync(join(tmpdir(), "effect-tcp-tls-")),
        catch: (error) => new Error(`cannot make a temporary directory: ${String(error)}`)
      }),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    const config = join(dir, "openssl.cnf")
    yield* Effect.try({
      try: () => {
        writeFileSync(config, configText(dir))
        writeFileSync(join(dir, "index.txt"), "")
      },
      catch: (error) => new Error(`cannot write the openssl configuration: ${String(error)}`)
    })
    const paths = (name: string) => ({ certFile: join(dir, `${name}.pem`), keyFile: join(dir, `${name}.key`) })
    const newKey = (name: string) => [
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-noenc",
      "-keyout",
      paths(name).keyFile
    ]
    const ca = paths("ca")
    // One `req -x509` per certificate: a new key and its certificate, signed by
    // the CA when `signed` (OpenSSL 3.0's `req -CA`), else by its own key.
    const certificate = (
      name: string,
      subject: string,
      extensions: ReadonlyArray<string>,
      signed: boolean
    ) =>
      run(openssl, [
        "req",
        "-config",
        config,
        "-x509",
        ...(signed ? ["-CA", ca.certFile, "-CAkey", ca.keyFile] : []),
        ...newKey(name),
        "-out",
        paths(name).certFile,
        "-subj",
        subject,
        "-days",
        "2",
        ...extensions.flatMap((extension) => ["-addext", extension])
      ])
    yield* certificate("ca", "/CN=effect-tcp-test-ca", [
      "basicConstraints=critical,CA:TRUE",
      "keyUsage=critical,keyCertSign,cRLSign"
    ], false)
    // `req -x509` cannot backdate, so the expired one is a request signed by
    // `openssl ca`, which takes explicit dates on OpenSSL 3.0 (x509 -not_before is 3.4+).
    const expired = Effect.andThen(
      run(openssl, [
        "req",
        "-config",
        config,
        "-new",
        ...newKey("expired"),
        "-out",
        join(dir, "expired.csr"),
        "-subj",
        "/CN=localhost",
        "-addext",
        LOCALHOST_NAMES,
        "-addext",
        "basicConstraints=CA:FALSE",
        "-addext",
        "extendedKeyUsage=serverAuth"
      ]),
      run(openssl, [
        "ca",
        "-config",
        config,
        "-batch",
        "-notext",
        "-cert",
        ca.certFile,
        "-keyfile",
        ca.keyFile,
        "-in",
        join(dir, "expired.csr"),
        "-out",
        paths("expired").certFile,
        "-startdate",
        EXPIRED_NOT_BEFORE,
        "-enddate",
        EXPIRED_NOT_AFTER
      ])
    )
    const serverExtensions = [LOCALHOST_NAMES, "basicConstraints=CA:FALSE", "extendedKeyUsage=serverAuth"]
    yield* Effect.all([
      certificate("server", "/CN=localhost", serverExtensions, true),
      certificate("client", "/CN=effect-tcp-test-client", ["basicConstraints=CA:FALSE", "extendedKeyUsage=clientAuth"], true),
      certificate("self-signed", "/CN=localhost", serverExtensions, false),
      certificate("other-name", `/CN=${OTHER_NAME}`, [
        `subjectAltName=DNS:${OTHER_NAME}`,
        "basicConstraints=CA:FALSE",
        "extendedKeyUsage=serverAuth"
      ], true),
      expired
    ], { concurrency: "unbounded", discard: true })
    const load = (name: string): Effect.Effect<CertificateFiles, Error> =>
      Effect.try({
        try: () => {
          const files = paths(name)
          return {
            ...files,
            cert: readFileSync(files.certFile, "utf8"),
            key: readFileSync(files.keyFile, "utf8")
          }
        },
        catch: (error) => new Error(`cannot read the ${name} certificate: ${String(error)}`)
      })
    return {
      dir,
      ca: yield* load("ca"),
      server: yield* load("server"),
      client: yield* load("client"),
      selfSigned: yield* load("self-signed"),
      otherName: yield* load("other-name"),
      expired: yield* load("expired")
    }
  })
