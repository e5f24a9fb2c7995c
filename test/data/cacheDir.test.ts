// Where token caches and downloads go: PRIMAL_CACHE_DIR, else the user's cache folder.
import { homedir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultCacheDir } from "../../src/data/paths.js";

describe("defaultCacheDir", () => {
  it("prefers PRIMAL_CACHE_DIR, then $XDG_CACHE_HOME/primal, then ~/.cache/primal", () => {
    expect(defaultCacheDir({ PRIMAL_CACHE_DIR: "/x/cache", XDG_CACHE_HOME: "/y" })).toBe("/x/cache");
    expect(defaultCacheDir({ XDG_CACHE_HOME: "/y" })).toBe("/y/primal");
    // A relative XDG_CACHE_HOME is invalid per the XDG spec and ignored.
    expect(defaultCacheDir({ XDG_CACHE_HOME: "rel" })).toBe(join(homedir(), ".cache", "primal"));
    expect(defaultCacheDir({ PRIMAL_CACHE_DIR: "" })).toBe(join(homedir(), ".cache", "primal"));
  });

  it("points at a temporary folder during tests (never the user's cache)", () => {
    const dir = defaultCacheDir();
    expect(process.env.PRIMAL_CACHE_DIR).toBeTruthy();
    expect(dir.startsWith(join(homedir(), ".cache"))).toBe(false);
  });
});
