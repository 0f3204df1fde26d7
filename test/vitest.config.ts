import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Each file in its own process: descriptor counts in /proc/self/fd are per file.
    pool: "forks",
    // The suites mostly wait on sockets, timers and child processes: three
    // files at a time keep 2 cores busy (and halve the run beside other work).
    maxWorkers: 3,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    typecheck: { enabled: false }
  }
})
