// The one-writer lock of a run directory, and the sidecar index that tells damage from a cut tail.
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ArrowAppender, RunLock, RunStoreError, metricsSchema, readArrowStream } from "../../src/tracking/index.js";
import { formatIndexLine, parseIndex } from "../../src/tracking/streamIndex.js";

const work = mkdtempSync(join(tmpdir(), "primal-lock-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const d = join(work, `d${n++}`);
  mkdirSync(d);
  return d;
};

describe("RunLock", () => {
  it("is exclusive, names the holder, and is released", () => {
    const dir = fresh();
    const a = RunLock.acquire(dir);
    expect(JSON.parse(readFileSync(join(dir, "lock"), "utf8"))).toMatchObject({ pid: process.pid, host: hostname() });
    expect(() => RunLock.acquire(dir)).toThrow(
      new RegExp(`is being written by pid ${process.pid} on ${hostname()} since .* \\(lock file .*lock\\)`),
    );
    a.release();
    expect(existsSync(join(dir, "lock"))).toBe(false);
    RunLock.acquire(dir).release();
  });

  it("takes over the stale lock of a dead process and says so", () => {
    const dir = fresh();
    // pid 2^22 + 1 is above Linux's pid_max limit, so no such process can exist.
    const dead = { pid: 4194305, host: hostname(), since: "2026-01-01T00:00:00.000Z" };
    writeFileSync(join(dir, "lock"), JSON.stringify(dead));
    const l = RunLock.acquire(dir);
    expect(l.replaced).toEqual(dead);
    expect(JSON.parse(readFileSync(join(dir, "lock"), "utf8")).pid).toBe(process.pid);
    l.release();
  });

  it("never assumes a lock of another host is stale", () => {
    const dir = fresh();
    writeFileSync(join(dir, "lock"), JSON.stringify({ pid: 4194305, host: "elsewhere.example", since: "x" }));
    expect(() => RunLock.acquire(dir)).toThrow(/pid 4194305 on elsewhere\.example/);
  });
});

const row = (step: number) => ({
  step,
  time: 0,
  loss: 1,
  lr: 1,
  gradNorm: 1,
  tokens: 1,
  tokensPerSec: 1,
  stepMs: 1,
  peakMemoryBytes: 0,
});

describe("sidecar index", () => {
  it("round-trips lines and rejects a damaged one by line number", () => {
    const lines =
      formatIndexLine({ offset: 0, length: 136, rows: 0, crc: 0xdeadbeef }) +
      formatIndexLine({ offset: 136, length: 200, rows: 3, crc: 1 });
    expect(parseIndex(lines, "m.arrows").entries).toEqual([
      { offset: 0, length: 136, rows: 0, crc: 0xdeadbeef },
      { offset: 136, length: 200, rows: 3, crc: 1 },
    ]);
    // A torn last line is not damage.
    expect(parseIndex(lines + "336 4", "m.arrows").entries).toHaveLength(2);
    expect(() => parseIndex(lines.replace("136 200", "136 201"), "m.arrows")).toThrow(
      /m\.arrows\.index is damaged at line 2/,
    );
  });

  it("a whole message without its index line (killed in between) is kept and indexed on reopen", () => {
    const path = join(fresh(), "metrics.arrows");
    const a = ArrowAppender.open(path, metricsSchema, { flushIntervalMs: 0 });
    a.append(row(1));
    a.flush();
    a.append(row(2));
    a.flush();
    a.close();
    // Drop the last index line, as if the writer died right after the message.
    const idx = readFileSync(`${path}.index`, "utf8").split("\n");
    writeFileSync(`${path}.index`, idx.slice(0, -2).join("\n") + "\n");
    expect(readArrowStream(path).numRows).toBe(2);
    const b = ArrowAppender.open(path, metricsSchema, { flushIntervalMs: 0 });
    b.append(row(3));
    b.close();
    expect(readFileSync(`${path}.index`, "utf8").trim().split("\n")).toHaveLength(4);
    expect(Array.from(readArrowStream(path).getChild("step")!.toArray() as Int32Array)).toEqual([1, 2, 3]);
  });

  it("a stream cut inside an indexed message is damage, one cut after the index is a torn tail", () => {
    const path = join(fresh(), "metrics.arrows");
    const a = ArrowAppender.open(path, metricsSchema, { flushIntervalMs: 0 });
    a.append(row(1));
    a.flush();
    a.close();
    const size = readFileSync(path).length;
    appendFileSync(path, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x40, 0, 0])); // a torn next message
    expect(readArrowStream(path).numRows).toBe(1);
    truncateSync(path, size - 20);
    expect(() => readArrowStream(path)).toThrow(RunStoreError);
    expect(() => readArrowStream(path)).toThrow(
      /metrics\.arrows is damaged: it has \d+ bytes but its index lists message 1/,
    );
  });
});
