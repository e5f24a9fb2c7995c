// All "network" here is a local HTTP server on 127.0.0.1: tests never contact the internet.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { DATASETS, fetchDataset } from "../../src/data/fetch.js";
import { cleanupTempDirs, REAL_WIKITEXT_DIR, REAL_WIKITEXT_SKIP, tempDir } from "./helpers.js";

afterAll(cleanupTempDirs);

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** Starts a local server; `handler` returns the body for a path, or null to never answer. */
async function serve(handler: (path: string) => Buffer | number | null): Promise<{ url: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    hits.push(path);
    const body = handler(path);
    if (body === null) return; // hang: the client must time out
    if (typeof body === "number") {
      res.writeHead(body).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" }).end(body);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/data/`, hits };
}

async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  return `http://127.0.0.1:${port}/`;
}

describe("fetchDataset", () => {
  it("documents a public HTTPS mirror and pinned digests", () => {
    const spec = DATASETS["wikitext-2"];
    expect(spec.baseUrl).toMatch(/^https:\/\/.*wikitext-2\/$/);
    expect(spec.files.map((f) => f.name)).toEqual(["valid.txt", "test.txt"]);
  });

  it("fails with a clear message when offline", async () => {
    const dest = tempDir();
    const err = await fetchDataset("wikitext-2", dest, { baseUrl: await closedPortUrl(), timeoutMs: 2000 }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(
      /could not download wikitext-2 file valid\.txt from http:\/\/127\.0\.0\.1:\d+\/valid\.txt/,
    );
    expect(err.message).toMatch(/ECONNREFUSED|no answer within/);
    expect(err.message).toMatch(/offline.*PRIMAL_WIKITEXT_DIR/);
    expect(readdirSync(dest)).toEqual([]);
  });

  it("times out on a server that never answers", async () => {
    const { url } = await serve(() => null);
    const err = await fetchDataset("wikitext-2", tempDir(), { baseUrl: url, timeoutMs: 300 }).catch((e) => e);
    expect(err.message).toMatch(/no answer within 300 ms/);
  });

  it("reports HTTP errors", async () => {
    const { url } = await serve(() => 404);
    await expect(fetchDataset("wikitext-2", tempDir(), { baseUrl: url, timeoutMs: 2000 })).rejects.toThrow(/HTTP 404/);
  });

  it("rejects content with the wrong checksum and leaves nothing behind", async () => {
    const { url } = await serve(() => Buffer.from("not wikitext"));
    const dest = tempDir();
    await expect(fetchDataset("wikitext-2", dest, { baseUrl: url, timeoutMs: 2000 })).rejects.toThrow(
      /checksum mismatch for valid\.txt.*expected sha256 f0737ed3/,
    );
    expect(readdirSync(dest)).toEqual([]);
  });

  // The checksums are those of the real files, so only the real files can be served here.
  it.skipIf(!REAL_WIKITEXT_DIR)(
    `downloads, verifies, and skips files already present ${REAL_WIKITEXT_SKIP}`,
    async () => {
      const { url, hits } = await serve((p) => readFileSync(join(REAL_WIKITEXT_DIR!, p.replace("/data/", ""))));
      const dest = join(tempDir(), "wt2");
      const logs: string[] = [];
      const first = await fetchDataset("wikitext-2", dest, {
        baseUrl: url,
        timeoutMs: 10_000,
        log: (m) => logs.push(m),
      });
      expect(first.dir).toBe(dest);
      expect(first.files.map((f) => [f.name, f.bytes, f.downloaded])).toEqual([
        ["valid.txt", 1121681, true],
        ["test.txt", 1256449, true],
      ]);
      expect(readdirSync(dest).sort()).toEqual(["test.txt", "valid.txt"]); // no temp files left
      expect(hits).toEqual(["/data/valid.txt", "/data/test.txt"]);
      expect(logs.some((m) => m.includes("sha256 verified"))).toBe(true);

      const second = await fetchDataset("wikitext-2", dest, { baseUrl: url });
      expect(second.files.every((f) => !f.downloaded)).toBe(true);
      expect(hits).toHaveLength(2);

      // A damaged local copy is replaced.
      writeFileSync(join(dest, "test.txt"), "damaged");
      const third = await fetchDataset("wikitext-2", dest, { baseUrl: url });
      expect(third.files.map((f) => f.downloaded)).toEqual([false, true]);
      expect(existsSync(join(dest, "test.txt")) && readFileSync(join(dest, "test.txt")).length).toBe(1256449);
    },
  );
});
