// Honest run status: a run whose writer died reads "crashed" (its lock's pid is gone, the pid was
// reused, or another host's heartbeat stopped) or "abandoned" (the writer exited without
// finishing it), never "running"; a live writer's run reads "running".
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStore } from "../../src/tracking/runStore.js";
import { listRuns, readRun } from "../../src/tracking/runReader.js";
import { liveStatus } from "../../src/tracking/runStatus.js";
import { HEARTBEAT_MS, RunLock, lockState } from "../../src/tracking/runLock.js";
import { ensureDist, distIndex } from "../reliability/fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-status-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));
beforeAll(() => ensureDist());

function store(name: string): RunStore {
  return RunStore.create({
    home,
    name,
    config: { preset: "tiny", quant: "poltergeist" },
    versions: { primal: "test", native: "none" },
    device: "cpu",
    seed: 1,
  });
}

/** A child process that opens a run (status running, lock held) and waits; prints the run's dir. */
function writer(): Promise<{ dir: string; child: ReturnType<typeof spawn> }> {
  const code = `
    const { RunStore } = await import(${JSON.stringify(distIndex)});
    const s = RunStore.create({ home: ${JSON.stringify(home)}, name: "child", config: { preset: "tiny" },
      versions: { primal: "t", native: "n" }, device: "cpu", seed: 1 });
    s.appendMetrics({ step: 1, loss: 5, lr: 1, gradNorm: 1, tokens: 1, tokensPerSec: 1, stepMs: 1, peakMemoryBytes: 0 });
    s.flush();
    process.stdout.write(s.dir + "\\n");
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.stdout!.once("data", (b: Buffer) => resolve({ dir: b.toString().trim(), child }));
    child.once("error", reject);
  });
}

describe("run status", () => {
  it("running while the writer lives, crashed after kill -9 (listRuns, readRun)", async () => {
    const { dir, child } = await writer();
    expect(listRuns(home).find((r) => r.dir === dir)?.status).toBe("running");
    const owner = JSON.parse(readFileSync(join(dir, "lock"), "utf8"));
    expect(owner.heartbeatMs).toBe(HEARTBEAT_MS);
    const exited = new Promise((r) => child.once("close", r));
    child.kill("SIGKILL");
    await exited;
    const r = listRuns(home).find((x) => x.dir === dir)!;
    expect(r.status).toBe("crashed");
    expect(r.statusReason).toMatch(/pid \d+ is no longer running/);
    expect(readRun(dir).status).toBe("crashed");
    // run.json itself is untouched: readers never write.
    expect(JSON.parse(readFileSync(join(dir, "run.json"), "utf8")).status).toBe("running");
    // A new writer takes the stale lock over (a resume).
    const again = RunStore.open(dir);
    expect(again.replacedLock?.pid).toBe(owner.pid);
    expect(liveStatus(dir, again.info).status).toBe("running");
    again.close();
  });

  it("abandoned when the writer exited without finishing the run", () => {
    const s = store("abandoned");
    s.close(); // what an exit without dispose() does: the lock goes, run.json still says running
    expect(listRuns(home).find((r) => r.dir === s.dir)).toMatchObject({ status: "abandoned" });
    expect(liveStatus(s.dir, { status: "finished" }).status).toBe("finished");
  });

  it("crashed when the lock's pid was reused by a later process (a reboot)", () => {
    const s = store("reused");
    const lock = join(s.dir, "lock");
    s.close();
    // This test process started after 2001: a lock taken then by "our" pid is someone else's.
    writeFileSync(
      lock,
      JSON.stringify({
        pid: process.pid,
        host: hostname(),
        since: "2001-01-01T00:00:00.000Z",
        heartbeatMs: HEARTBEAT_MS,
      }),
    );
    const st = lockState(s.dir);
    expect(st.state).toBe("dead");
    expect(liveStatus(s.dir, { status: "running" })).toMatchObject({ status: "crashed" });
    expect(liveStatus(s.dir, { status: "running" }).reason).toMatch(/started after the lock was taken/);
  });

  it("judges another host's writer by its heartbeat", () => {
    const s = store("remote");
    const lock = join(s.dir, "lock");
    s.close();
    const since = new Date().toISOString();
    writeFileSync(lock, JSON.stringify({ pid: 1, host: "another-host.example", since, heartbeatMs: HEARTBEAT_MS }));
    expect(liveStatus(s.dir, { status: "running" }).status).toBe("running");
    const old = new Date(Date.now() - 10 * 60_000);
    utimesSync(lock, old, old);
    expect(liveStatus(s.dir, { status: "running" })).toMatchObject({ status: "crashed" });
    expect(liveStatus(s.dir, { status: "running" }).reason).toMatch(/no heartbeat from another-host.example/);
    // A stale remote lock can be taken over (a sweep resumed on another node)...
    const taken = RunLock.acquire(s.dir);
    expect(taken.replaced?.host).toBe("another-host.example");
    taken.release();
    // ...but the lock of an older writer without a heartbeat is never judged from afar.
    writeFileSync(lock, JSON.stringify({ pid: 1, host: "another-host.example", since }));
    utimesSync(lock, old, old);
    expect(liveStatus(s.dir, { status: "running" }).status).toBe("running");
    expect(() => RunLock.acquire(s.dir)).toThrow(/being written by pid 1 on another-host.example/);
  });

  it("the heartbeat refreshes the lock's mtime while the writer lives", async () => {
    const s = store("heartbeat");
    const lock = join(s.dir, "lock");
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    await new Promise((r) => setTimeout(r, HEARTBEAT_MS + 500));
    expect(Date.now() - statSync(lock).mtimeMs).toBeLessThan(HEARTBEAT_MS + 1000);
    s.close();
  }, 30_000);
});
