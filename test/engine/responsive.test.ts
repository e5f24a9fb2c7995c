// Training runs on a worker thread: the JavaScript event loop keeps running timers while a
// step runs, and stop() from a timer ends train() cleanly at a step boundary.
import { afterEach, describe, expect, it } from "vitest";
import { native, type NativeStep, type NativeTrainer } from "../../src/native.js";

const open: NativeTrainer[] = [];
afterEach(() => {
  for (const t of open.splice(0)) if (!t.isTraining()) t.dispose();
});

function make(): NativeTrainer {
  const { NativeTrainer: Native } = native();
  const nt = new Native({
    model: { vocab: 256, dModel: 64, layers: 2, heads: 4, ffn: 192, seq: 64 },
    quant: "poltergeist",
    actBits: 8,
    batch: 8,
    accum: 1,
    seed: 3,
    warmup: 5,
    totalSteps: 1000,
    knobs: {},
    device: "cpu",
    threads: 2,
  });
  open.push(nt);
  const data = new Int32Array(50_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 4)) % 256;
  nt.setTrainData(data);
  return nt;
}

describe("event loop responsiveness", () => {
  it("setInterval keeps firing during train()", async () => {
    const nt = make();
    // Calibrate so training lasts about 1.5 s on this machine.
    const t0 = performance.now();
    await nt.train(3);
    const msPerStep = Math.max(1, (performance.now() - t0) / 3);
    const n = Math.max(10, Math.ceil(1500 / msPerStep));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const start = performance.now();
    let steps = 0;
    try {
      const s = await nt.train(n, () => steps++);
      expect(s.steps).toBe(n);
      expect(s.stopped).toBe(false);
    } finally {
      clearInterval(timer);
    }
    const ms = performance.now() - start;
    console.log(`[responsive] ${n} steps in ${ms.toFixed(0)} ms, ${ticks} ticks of a 10 ms interval`);
    expect(steps).toBe(n);
    // No absolute time bounds (machines are shared): a blocked loop gives ~0 ticks whatever the
    // duration, a free one about ms/10 (timers on a busy box run late, hence the wide margin).
    expect(ticks).toBeGreaterThanOrEqual(5);
    expect(ticks).toBeGreaterThan((ms / 10) * 0.25);
  });

  it("evaluate() and generate() run off the main thread too", async () => {
    const nt = make();
    const tokens = new Int32Array(40_000);
    for (let i = 0; i < tokens.length; i++) tokens[i] = (i * 13) % 256;
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const start = performance.now();
    try {
      const r = await nt.evaluate(tokens, 64);
      expect(r.count).toBe(tokens.length - 1);
      await nt.generate(Int32Array.from([84, 104, 101]), 60, 0.8, 40, 1);
    } finally {
      clearInterval(timer);
    }
    const ms = performance.now() - start;
    if (ms > 300) expect(ticks).toBeGreaterThan((ms / 10) * 0.25);
  });

  it("stop() from a timer ends train() at a step boundary with stopped: true", async () => {
    const nt = make();
    const seen: NativeStep[] = [];
    let stopReturned: boolean | undefined;
    const timer = setTimeout(() => {
      stopReturned = nt.stop();
    }, 400);
    const s = await nt.train(100_000, (st) => seen.push(st));
    clearTimeout(timer);
    expect(stopReturned).toBe(true); // it was training when stop() came
    expect(s.stopped).toBe(true);
    expect(s.steps).toBeGreaterThan(0);
    expect(s.steps).toBeLessThan(100_000);
    // Every completed step was reported, in order, and nothing half-done was left behind.
    expect(seen).toHaveLength(s.steps);
    expect(seen.map((x) => x.step)).toEqual(Array.from({ length: s.steps }, (_, i) => i + 1));
    expect(s.step).toBe(s.steps);
    expect(nt.info().step).toBe(s.steps);
    expect(s.lastLoss).toBe(seen.at(-1)!.loss);
    expect(nt.isTraining()).toBe(false);
    // The trainer is usable again, and the stop request does not leak into the next call.
    const again = await nt.train(2);
    expect(again).toMatchObject({ steps: 2, stopped: false, step: s.steps + 2 });
  });

  // A stop() while idle must not linger as a cancel signal for the next evaluation (e.g. after a
  // notebook interrupt that landed between training chunks).
  it("an idle stop() does not cancel the next evaluate()", async () => {
    const nt = make();
    nt.stop();
    const r = await nt.evaluate(
      Int32Array.from({ length: 200 }, (_, i) => i % 256),
      64,
    );
    expect(r.count).toBe(199);
  });

  it("stop() when idle is a no-op and a second concurrent train() is refused", async () => {
    const nt = make();
    expect(nt.stop()).toBe(false);
    const first = nt.train(3);
    expect(nt.isTraining()).toBe(true);
    expect(() => nt.train(1)).toThrow(/already training/);
    expect(() => nt.setCodes(0, new Int8Array(64 * 64))).toThrow(/training/);
    expect(() => nt.dispose()).toThrow(/training/);
    const s = await first;
    expect(s).toMatchObject({ steps: 3, stopped: false });
  });
});
