import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Each file in its own process: descriptor counts in /proc/self/fd are per file.
    pool: "forks",
    testTimeout: 30_000,
    hookTimeout: 30_000,
    typecheck: { enabled: false }
  }
})
