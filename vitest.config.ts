import { defineConfig } from "vitest/config";

// Native training runs are CPU-heavy: run test files one at a time on small CI machines.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // A temporary PRIMAL_CACHE_DIR for the run: tests never write the user's cache folder.
    globalSetup: ["test/setup/cacheDir.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    fileParallelism: false,
    pool: "forks",
    reporters: ["default"],
  },
});
