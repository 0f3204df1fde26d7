/**
 * What the public modules expose (DESIGN.md, "Layout and packaging"): no
 * name meant for the library's own use (`TcpSocket.attach`, `connectionOf`,
 * `TcpMetrics.track`, the pool behind `TcpStorage`), every exported name
 * documented as public API, each layer one object whichever name reaches it,
 * and no import cycle in `src/`. The published tarball's shape is checked
 * by test/package/check.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { inspect } from "node:util"
import { TcpClient, TcpMetrics, TcpSocket, TcpStorage, TcpTest } from "../src/index.ts"

const src = Path.resolve(import.meta.dirname, "..", "src")

/** The public modules: every file directly under `src/` (private code lives in `src/internal/`). */
const publicModules = Fs.readdirSync(src).filter((name) => name.endsWith(".ts")).sort()

/** Every `.ts` file under `src/`, as paths relative to it. */
const sourceFiles = (dir = src): Array<string> =>
  Fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = Path.join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(path)
    return entry.name.endsWith(".ts") ? [Path.relative(src, path)] : []
  })

/**
 * The names a module exports at top level, each with the JSDoc block right
 * above it (`""` when there is none). `export { a, b }` lists carry a block
 * per name, inside the braces.
 */
const exportedNames = (text: string): Array<{ readonly name: string; readonly doc: string }> => {
  const lines = text.split("\n")
  const docAbove = (index: number): string => {
    let i = index - 1
    if (i < 0 || !lines[i]?.trim().endsWith("*/")) return ""
    const end = i
    while (i >= 0 && !lines[i]?.trim().startsWith("/**")) i--
    return lines.slice(i, end + 1).join("\n")
  }
  const found: Array<{ name: string; doc: string }> = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? ""
    const declared = /^export\s+(?:declare\s+)?(?:const|let|function|class|interface|type|enum|namespace)\s+([A-Za-z_$][\w$]*)/
      .exec(line)
    const namespace = /^export\s+\*\s+as\s+([A-Za-z_$][\w$]*)/.exec(line)
    const match = declared ?? namespace
    if (match?.[1] !== undefined) {
      found.push({ name: match[1], doc: docAbove(i) })
      continue
    }
    if (/^export\s+(?:type\s+)?\{\s*$/.test(line)) {
      for (i++; i < lines.length && !(lines[i] ?? "").startsWith("}"); i++) {
        const name = /^\s*([A-Za-z_$][\w$]*)\s*,?\s*$/.exec(lines[i] ?? "")
        if (name?.[1] !== undefined) found.push({ name: name[1], doc: docAbove(i) })
      }
    }
  }
  return found
}

/** Relative imports and re-exports of a source file, resolved to paths relative to `src/`. */
const importsOf = (file: string): Array<string> => {
  const text = Fs.readFileSync(Path.join(src, file), "utf8")
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^"';]*?\bfrom\s+["'](\.{1,2}\/[^"']+)["']/g)].flatMap(
    (match) => match[1] === undefined ? [] : [Path.relative(src, Path.resolve(src, Path.dirname(file), match[1]))]
  )
}

/** The import cycles among `files`: each strongly connected group of more than one file (or a file importing itself). */
const importCycles = (files: ReadonlyArray<string>): Array<Array<string>> => {
  const edges = new Map(files.map((file) => [file, importsOf(file).filter((to) => files.includes(to))]))
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const cycles: Array<Array<string>> = []
  // Tarjan's algorithm; the recursion is as deep as the longest import chain.
  const visit = (file: string): void => {
    index.set(file, index.size)
    low.set(file, index.get(file) ?? 0)
    stack.push(file)
    for (const to of edges.get(file) ?? []) {
      if (!index.has(to)) {
        visit(to)
        low.set(file, Math.min(low.get(file) ?? 0, low.get(to) ?? 0))
      } else if (stack.includes(to)) {
        low.set(file, Math.min(low.get(file) ?? 0, index.get(to) ?? 0))
      }
    }
    if (low.get(file) !== index.get(file)) return
    const group: Array<string> = []
    for (let member = stack.pop(); member !== undefined; member = member === file ? undefined : stack.pop()) {
      group.push(member)
    }
    if (group.length > 1 || edges.get(file)?.includes(file)) cycles.push(group)
  }
  for (const file of files) if (!index.has(file)) visit(file)
  return cycles
}

describe("the public surface", () => {
  it("keeps the library's own helpers out of the public modules", () => {
    for (const name of ["attach", "connectionOf"]) assert.notProperty(TcpSocket, name, `TcpSocket.${name}`)
    assert.notProperty(TcpMetrics, "track", "TcpMetrics.track")
  })

  it("documents every name a public module exports as public API (@since), none as @internal", () => {
    const undocumented: Array<string> = []
    for (const file of publicModules) {
      const names = exportedNames(Fs.readFileSync(Path.join(src, file), "utf8"))
      assert.isNotEmpty(names, `${file} exports something`)
      // A function's overloads share one name: the implementation signature needs no block of its own.
      for (const name of new Set(names.map((exported) => exported.name))) {
        const docs = names.filter((exported) => exported.name === name).map((exported) => exported.doc)
        if (!docs.some((doc) => doc.includes("@since")) || docs.some((doc) => doc.includes("@internal"))) {
          undocumented.push(`${file}: ${name}`)
        }
      }
    }
    assert.deepStrictEqual(undocumented, [])
  })

  it.effect("the TcpStorage service shows its settings and figures, not the pool behind it", () =>
    Effect.gen(function*() {
      const storage = yield* TcpStorage.TcpStorage
      assert.notProperty(storage, "pool")
      assert.deepStrictEqual(Object.keys(storage).filter((key) => typeof key === "string").sort(), [
        "acquire",
        "bufferSize",
        "stats"
      ])
      // @ts-expect-error: the service's type has no pool either
      assert.isUndefined(storage.pool)
      // Printing still shows the pool's figures.
      assert.include(inspect(storage), "inUse")
    }).pipe(Effect.provide(TcpStorage.layer({ slots: 2, bufferSize: 1024 }))))

  it("reaches each layer as one object, whether through the module or the service class", () => {
    assert.strictEqual(TcpClient.layer, TcpClient.TcpClient.layer)
    assert.strictEqual(TcpClient.layerConfig, TcpClient.TcpClient.layerConfig)
    assert.strictEqual(TcpClient.layerWith, TcpClient.TcpClient.layerWith)
    assert.strictEqual(TcpStorage.layer, TcpStorage.TcpStorage.layer)
    assert.strictEqual(TcpStorage.layerConfig, TcpStorage.TcpStorage.layerConfig)
    assert.strictEqual(TcpTest.layer, TcpTest.TcpTest.layer)
    assert.strictEqual(TcpTest.layerWith, TcpTest.TcpTest.layerWith)
  })

  it("has no import cycle in src/", () => {
    const files = sourceFiles()
    assert.isAbove(files.filter((file) => file.startsWith("internal")).length, 0, "the walk reaches src/internal/")
    assert.isNotEmpty(importsOf("TcpSocket.ts"), "imports are found")
    assert.deepStrictEqual(importCycles(files), [])
  })
})
