import { defineConfig } from "vitest/config";

// Native training runs are CPU-heavy: run test files one at a time on small CI machines.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Caches, downloads and runs of the whole test run go to a fresh temporary folder.
    globalSetup: ["test/setup/isolate.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    fileParallelism: false,
    pool: "forks",
    reporters: ["./test/setup/skippedReporter.ts", "default"],
  },
});
