/**
 * The published package, checked the way its users get it (DESIGN.md,
 * "Layout and packaging"):
 *
 *   1. `npm pack`, which builds `dist/` through `prepack`; the tarball holds
 *      `dist/` and nothing of `src/`, and every `exports` target is in `dist/`
 *      but `./internal/*`, which is closed;
 *   2. publint (strict) and `attw --profile esm-only` on that tarball find
 *      nothing, every public module checked as its own entry point;
 *   3. a fresh project installs the tarball with effect and
 *      @effect/platform-node (the versions this repository uses), then
 *      `consumer.mjs` runs there under Node 24 and under the oldest Node 22
 *      `engines` allows, and a strict NodeNext TypeScript consumer that
 *      handles connect's errors with `Effect.catchTags` type-checks.
 *
 *     npm run check:package    # also the last step of `npm test`
 *
 * Node 22 is the `node` npm package at exactly the floor `engines` names,
 * installed into the temporary directory: its preinstall script fetches the
 * binary, so the install approves it (`allowScripts`) rather than rely on
 * npm's default. The first run needs the registry; later ones are served
 * from npm's cache. A failure there fails the check: nothing is skipped.
 * Every child process runs in its own process group under a time limit and
 * the whole check under one more; the temporary directory is removed at the
 * end, whatever happened.
 */
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const repo = Path.resolve(import.meta.dirname, "..", "..")
const seconds = (n: number) => n * 1000

/** The whole check, whatever its steps take: a run that gets here is stuck, not slow. */
const OVERALL_LIMIT = seconds(900)

/** A step that failed, with what its command printed. */
class StepFailed extends Error {
  readonly output: string
  constructor(message: string, output = "") {
    super(message)
    this.output = output
  }
}

const fail = (message: string, output = ""): never => {
  throw new StepFailed(message, output)
}

// ------------------------------------------------------------- processes

/** Process groups still running, killed if the check ends early. */
const running = new Set<number>()

const killGroup = (pid: number): void => {
  try {
    process.kill(-pid, "SIGKILL")
  } catch {
    // Already gone.
  }
}

/**
 * npm exports its configuration to scripts as `npm_*` variables; the ones
 * naming this project would make an install in another directory act on
 * this one.
 */
const childEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([name]) =>
    !/^npm_(package_|lifecycle_|command$|config_(local_prefix|call|allow_scripts)$)/.test(name) && name !== "INIT_CWD"
  )
)

/** What a command printed, kept to its last 64 KiB for a failure report. */
const tail = (text: string): string => text.length > 65_536 ? `…${text.slice(-65_536)}` : text

/**
 * Runs `command args` in `cwd` with no stdin, in its own process group,
 * killed with the group after `limit` ms. Resolves with its output when it
 * exits 0; anything else is a `StepFailed`.
 */
const run = (
  command: string,
  args: ReadonlyArray<string>,
  cwd: string,
  limit: number
): Promise<string> =>
  new Promise((resolve, reject) => {
    const shown = [Path.basename(command), ...args.map((a) => a.startsWith("/") ? Path.basename(a) : a)].join(" ")
    const child = spawn(command, args, { cwd, env: childEnv, stdio: ["ignore", "pipe", "pipe"], detached: true })
    let output = ""
    const collect = (chunk: string) => {
      output = tail(output + chunk)
    }
    child.stdout.setEncoding("utf8").on("data", collect)
    child.stderr.setEncoding("utf8").on("data", collect)
    const pid = child.pid
    if (pid !== undefined) running.add(pid)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      if (pid !== undefined) killGroup(pid)
    }, limit)
    child.on("error", (error) => {
      clearTimeout(timer)
      if (pid !== undefined) running.delete(pid)
      reject(new StepFailed(`${shown}: ${error.message}`, output))
    })
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      if (pid !== undefined) {
        // Whatever it started and left behind goes with it.
        killGroup(pid)
        running.delete(pid)
      }
      if (timedOut) reject(new StepFailed(`${shown} did not finish within ${limit / 1000} s`, output))
      else if (code !== 0) reject(new StepFailed(`${shown} exited with ${code ?? signal}`, output))
      else resolve(output)
    })
  })

/** The script a package's `bin` entry names, run with this Node rather than whatever `node` is on PATH. */
const binOf = (pkg: string, name: string): string => {
  const dir = Path.join(repo, "node_modules", pkg)
  const manifest: unknown = JSON.parse(Fs.readFileSync(Path.join(dir, "package.json"), "utf8"))
  const bin: unknown = typeof manifest === "object" && manifest !== null ? Reflect.get(manifest, "bin") : undefined
  const file: unknown = typeof bin === "string" ? bin : typeof bin === "object" && bin !== null ? Reflect.get(bin, name) : undefined
  return typeof file === "string" ? Path.join(dir, file) : fail(`${pkg} has no bin ${name}: run npm ci`)
}

/** The version of a package this repository installed. */
const installedVersion = (pkg: string): string => {
  const manifest: unknown = JSON.parse(Fs.readFileSync(Path.join(repo, "node_modules", pkg, "package.json"), "utf8"))
  const version: unknown = typeof manifest === "object" && manifest !== null ? Reflect.get(manifest, "version") : undefined
  return typeof version === "string" ? version : fail(`no version in node_modules/${pkg}/package.json`)
}

const writeJson = (file: string, value: unknown): void => Fs.writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`)

// ------------------------------------------------------------- the steps

/** `npm pack` into `dir`; the tarball's path. */
const pack = async (dir: string): Promise<string> => {
  await run("npm", ["pack", "--pack-destination", dir], repo, seconds(180))
  const tarballs = Fs.readdirSync(dir).filter((f) => f.endsWith(".tgz"))
  const [tarball] = tarballs
  if (tarball === undefined || tarballs.length !== 1) return fail(`npm pack left ${tarballs.length} tarballs in ${dir}`)
  return Path.join(dir, tarball)
}

/** The public modules: `src/*.ts` but `index.ts`. */
const publicModules = (): ReadonlyArray<string> =>
  Fs.readdirSync(Path.join(repo, "src"))
    .filter((f) => f.endsWith(".ts") && f !== "index.ts")
    .map((f) => f.slice(0, -".ts".length))
    .sort()

/** Every string an `exports` value can resolve to, with the subpath that leads there. */
const exportTargets = (value: unknown, subpath: string): ReadonlyArray<readonly [string, string | null]> => {
  if (value === null) return [[subpath, null]]
  if (typeof value === "string") return [[subpath, value]]
  if (typeof value !== "object") return fail(`exports["${subpath}"] is ${typeof value}`)
  return Object.entries(value).flatMap(([key, inner]) => exportTargets(inner, key.startsWith(".") ? key : subpath))
}

/** Extracts the tarball into `dir` and checks what it holds; the package's directory. */
const inspect = async (tarball: string, dir: string): Promise<string> => {
  Fs.mkdirSync(dir)
  await run("tar", ["-xzf", tarball, "-C", dir], dir, seconds(60))
  const root = Path.join(dir, "package")
  const files = Fs.readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => Path.relative(root, Path.join(entry.parentPath, entry.name)))
  const stray = files.filter((f) => !f.startsWith("dist/") && !["package.json", "README.md", "LICENSE"].includes(f))
  if (stray.length > 0) fail(`the tarball holds files outside dist/: ${stray.join(", ")}`)
  for (const name of ["index", ...publicModules()]) {
    for (const file of [`dist/${name}.js`, `dist/${name}.d.ts`]) {
      if (!files.includes(file)) fail(`the tarball has no ${file}: is prepack building dist/?`)
    }
  }
  const manifest: unknown = JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8"))
  const exportsField: unknown = typeof manifest === "object" && manifest !== null ? Reflect.get(manifest, "exports") : undefined
  for (const [subpath, target] of exportTargets(exportsField, ".")) {
    if (subpath === "./internal/*" ? target !== null : target !== null && !/^\.\/(dist\/|package\.json$)/.test(target)) {
      fail(`exports["${subpath}"] leads to ${String(target)}: only dist/ is published, and ./internal/* is closed`)
    }
  }
  return root
}

const publint = async (packageDir: string): Promise<string> => {
  // `--pack false`: lint exactly the files the tarball holds.
  const output = await run(process.execPath, [binOf("publint", "publint"), "run", "--strict", "--pack", "false", packageDir], packageDir, seconds(60))
  if (!output.includes("All good!")) fail("publint found something", output)
  return output
}

const attw = (tarball: string): Promise<string> =>
  run(
    process.execPath,
    [
      binOf("@arethetypeswrong/cli", "attw"),
      tarball,
      "--profile",
      "esm-only",
      "--format",
      "ascii",
      "--no-color",
      "--no-emoji",
      "--include-entrypoints",
      ...publicModules().map((name) => `./${name}`)
    ],
    Path.dirname(tarball),
    seconds(120)
  )

/** The lowest Node 22 `engines` accepts, e.g. `22.19.0` from `^22.19.0 || >=24`. */
const node22Floor = (): string => {
  const manifest: unknown = JSON.parse(Fs.readFileSync(Path.join(repo, "package.json"), "utf8"))
  const engines: unknown = typeof manifest === "object" && manifest !== null ? Reflect.get(manifest, "engines") : undefined
  const range: unknown = typeof engines === "object" && engines !== null ? Reflect.get(engines, "node") : undefined
  const floor = typeof range === "string" ? /\^(22\.\d+\.\d+)/.exec(range)?.[1] : undefined
  return floor ?? fail(`engines.node (${String(range)}) names no Node 22 floor such as ^22.19.0`)
}

/** Installs the `node` package at `version` into `dir`; the path of its binary, checked to be that version. */
const installNode = async (version: string, dir: string): Promise<string> => {
  Fs.mkdirSync(dir)
  // The binary comes from the package's preinstall script: approved here, in the project's own terms.
  writeJson(Path.join(dir, "package.json"), {
    name: "effect-tcp-node22",
    private: true,
    dependencies: { node: version },
    allowScripts: { node: true }
  })
  try {
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--no-package-lock"], dir, seconds(300))
  } catch (error) {
    const output = error instanceof StepFailed ? error.output : ""
    return fail(`could not install node@${version} from npm (the first run needs the registry): ${error instanceof Error ? error.message : String(error)}`, output)
  }
  const binary = Path.join(dir, "node_modules", "node", "bin", "node")
  const reported = (await run(binary, ["--version"], dir, seconds(30))).trim()
  if (reported !== `v${version}`) fail(`node@${version} installed a binary that says ${JSON.stringify(reported)}`)
  return binary
}

/** A strict NodeNext project that only compiles against the installed package. */
const typedConsumer = `import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { TcpClient, TcpError, TcpNode } from "effect-tcp"
import type { TcpSocket } from "effect-tcp"
import * as TcpErrorModule from "effect-tcp/TcpError"
// @ts-expect-error: the library's internals are not exported
import * as Internal from "effect-tcp/internal/address"

// Every error connect can fail with, by tag: what is left cannot fail.
const verdict = (address: string): Effect.Effect<string, never, TcpClient.TcpClient> =>
  TcpClient.connect(address, { timeout: "1 second" }).pipe(
    Effect.as("open"),
    Effect.scoped,
    Effect.catchTags({
      ConnRefused: (e) => Effect.succeed(\`closed (\${e.errno})\`),
      TimedOut: () => Effect.succeed("filtered"),
      HostUnreach: (e) => Effect.succeed(e.message),
      NetUnreach: (e) => Effect.succeed(e.message),
      NetDown: (e) => Effect.succeed(e.message),
      AccessDenied: (e) => Effect.succeed(e.message),
      AddrNotAvail: (e) => Effect.succeed(e.message),
      InvalidArgument: (e) => Effect.succeed(e.message),
      ConnReset: (e) => Effect.succeed(e.message),
      TooManyOpenFiles: (e) => Effect.succeed(e.message),
      SystemFileLimit: (e) => Effect.succeed(e.message),
      OutOfMemory: (e) => Effect.succeed(e.message),
      SystemError: (e) => Effect.succeed(\`\${e.errno}: \${e.message}\`)
    })
  )

const onlyRefused = TcpClient.connect("127.0.0.1:1").pipe(
  Effect.scoped,
  Effect.catchTags({ ConnRefused: () => Effect.succeed("closed") })
)
// @ts-expect-error: the other connect errors are still there
const notExhaustive: Effect.Effect<unknown, never, TcpClient.TcpClient> = onlyRefused

const wrongTag = TcpClient.connect("127.0.0.1:1").pipe(
  Effect.scoped,
  // @ts-expect-error: connect never fails with PeerClosed
  Effect.catchTags({ PeerClosed: () => Effect.succeed("ended") })
)

const read = (socket: TcpSocket.TcpSocket): Effect.Effect<Uint8Array, TcpError.RecvError> => socket.recv(4)
const sameClass: typeof TcpError.ConnRefused = TcpErrorModule.ConnRefused

NodeRuntime.runMain(verdict("127.0.0.1:1").pipe(Effect.flatMap(Console.log), Effect.provide(TcpNode.layer)))
export { Internal, notExhaustive, read, sameClass, wrongTag }
`

/** A project that installs the tarball with the repository's effect, platform-node and @types/node. */
const consumerProject = async (tarball: string, dir: string): Promise<void> => {
  Fs.mkdirSync(dir)
  writeJson(Path.join(dir, "package.json"), {
    name: "effect-tcp-consumer",
    private: true,
    type: "module",
    dependencies: {
      "effect-tcp": `file:${tarball}`,
      effect: installedVersion("effect"),
      "@effect/platform-node": installedVersion("@effect/platform-node"),
      "@types/node": installedVersion("@types/node")
    }
  })
  writeJson(Path.join(dir, "tsconfig.json"), {
    compilerOptions: {
      target: "ES2023",
      lib: ["ES2023"],
      module: "NodeNext",
      moduleResolution: "NodeNext",
      types: ["node"],
      strict: true,
      exactOptionalPropertyTypes: true,
      noUncheckedIndexedAccess: true,
      // effect's own declarations name DOM types (CryptoKey) a Node project has not got.
      skipLibCheck: true,
      noEmit: true
    },
    files: ["consumer.ts"]
  })
  Fs.writeFileSync(Path.join(dir, "consumer.ts"), typedConsumer)
  Fs.copyFileSync(Path.join(import.meta.dirname, "consumer.mjs"), Path.join(dir, "consumer.mjs"))
  // The repository's install filled npm's cache with these: no registry round trip when it did.
  await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--no-package-lock", "--ignore-scripts"], dir, seconds(300))
}

// ------------------------------------------------------------- main

const step = async <A>(name: string, body: () => Promise<A>): Promise<A> => {
  const started = performance.now()
  const result = await body()
  console.log(`package: ${name} (${((performance.now() - started) / 1000).toFixed(1)} s)`)
  return result
}

const main = async (tmp: string): Promise<void> => {
  const major = Number(process.versions.node.split(".")[0])
  if (major < 24) fail(`run this with Node 24 (npm run check:package, or npx node test/package/check.ts), not ${process.version}`)
  const floor = node22Floor()
  const tarball = await step("npm pack (prepack builds dist/)", () => pack(tmp))
  const packageDir = await step(`tarball holds dist/ only, exports lead into dist/`, () => inspect(tarball, Path.join(tmp, "unpacked")))
  console.log((await step("publint --strict", () => publint(packageDir))).trim().replace(/^/gm, "  "))
  await step("attw --profile esm-only", () => attw(tarball))
  console.log(`  no problems: ".", "./package.json", ${publicModules().map((name) => `"./${name}"`).join(", ")}`)
  const consumer = Path.join(tmp, "consumer")
  await step("consumer project installs the tarball with effect and @effect/platform-node", () => consumerProject(tarball, consumer))
  const node22 = await step(`node@${floor} installed`, () => installNode(floor, Path.join(tmp, "node22")))
  for (const [name, binary] of [[process.version, process.execPath], [`v${floor}`, node22]] as const) {
    const output = await step(`consumer.mjs under Node ${name}`, () =>
      run(binary, ["consumer.mjs"], consumer, seconds(60)).catch((error: unknown) =>
        fail(`consumer.mjs under Node ${name}: ${String(error)}`, error instanceof StepFailed ? error.output : "")
      ))
    console.log(output.trimEnd())
  }
  await step("consumer.ts type-checks (strict, NodeNext, catchTags over connect's errors)", () =>
    run(process.execPath, [Path.join(repo, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], consumer, seconds(120)))
}

const tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-tcp-package-"))
const cleanUp = () => {
  for (const pid of running) killGroup(pid)
  Fs.rmSync(tmp, { recursive: true, force: true })
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    cleanUp()
    process.exit(1)
  })
}
const overall = setTimeout(() => {
  console.error(`package: FAILED: the check did not finish within ${OVERALL_LIMIT / 1000} s`)
  cleanUp()
  process.exit(1)
}, OVERALL_LIMIT)

try {
  await main(tmp)
  console.log("package: all checks passed")
} catch (error) {
  console.error(`package: FAILED: ${error instanceof Error ? error.message : String(error)}`)
  if (error instanceof StepFailed && error.output !== "") console.error(error.output.trimEnd().replace(/^/gm, "  | "))
  process.exitCode = 1
} finally {
  clearTimeout(overall)
  cleanUp()
}
