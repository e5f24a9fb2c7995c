// The whole stack on a GPU: TypeScript facade (dist/) -> N-API addon -> CUDA backend. A plain
// Node script (node:assert; vitest is a devDependency and does not travel to the GPU machine),
// run by test/bench/gpu/stack-check.sh. Each check prints one JSON line {check, ok, ...} and the
// script goes on after a failure; it exits 1 when any check failed.
//   node test/gpu/stack-check.mjs            (needs dist/ and build/Release/primal_native.node)
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const root = join(import.meta.dirname, "..", "..");
const { Trainer } = await import(pathToFileURL(join(root, "dist", "src", "index.js")).href);
// The addon is internal to the package (not exported from index.js); this check reaches it directly.
const { native } = await import(pathToFileURL(join(root, "dist", "src", "native.js")).href);
// STACK_DEVICE=cpu runs the same checks on the CPU (to try the script without a GPU).
const device = process.env.STACK_DEVICE ?? "cuda";
const home = mkdtempSync(join(tmpdir(), "primal-stack-check-"));
let failed = 0;

async function check(name, fn) {
  const t0 = performance.now();
  try {
    const info = (await fn()) ?? {};
    console.log(JSON.stringify({ check: name, ok: true, seconds: (performance.now() - t0) / 1000, ...info }));
  } catch (e) {
    failed++;
    console.log(
      JSON.stringify({
        check: name,
        ok: false,
        seconds: (performance.now() - t0) / 1000,
        error: String(e?.stack ?? e).slice(0, 1500),
      }),
    );
  }
}

// A small byte-level run on the GPU (the "small" preset, a short schedule).
const base = (over = {}) => ({
  preset: "small",
  device,
  steps: 40,
  warmup: 4,
  sampleEvery: 0,
  checkpointEvery: 0,
  eval: { every: 0, maxTokens: 4096 },
  home,
  seed: 3,
  ...over,
});

await check("addon built with CUDA", () => {
  const n = native();
  const info = n.cudaInfo();
  if (device === "cuda") {
    assert.equal(info.built, true, "the addon was built without the CUDA backend");
    assert.ok(info.devices >= 1, "the addon sees no CUDA device");
  }
  return { version: n.version, ...info };
});

await check("create, train, layers and votes tables, set bridge", async () => {
  const t = await Trainer.create(base({ name: "stack-train" }));
  try {
    if (device === "cuda") assert.match(t.device, /cuda|NVIDIA|sm_/i);
    const s = await t.train(10);
    assert.equal(s.steps, 10);
    assert.ok(Number.isFinite(s.loss), `loss ${s.loss}`);
    const layers = t.layers();
    assert.equal(layers.numRows, t.layerNames().length);
    const votes = t.votes(0);
    assert.ok(votes.numRows > 0);
    const k = t.set({ bridge: null });
    assert.equal(k.bridge, null);
    const s2 = await t.train(2);
    assert.ok(Number.isFinite(s2.loss));
    t.set({ bridge: 2 / 3 });
    const ev = await t.evaluate();
    return {
      device: t.device,
      loss: s.loss,
      tokensPerSec: s.tokensPerSec,
      layers: layers.numRows,
      evalLoss: ev.validation?.loss,
    };
  } finally {
    t.dispose();
  }
});

await check("stop from a step callback ends train() early", async () => {
  const t = await Trainer.create(base({ name: "stack-stop" }));
  try {
    const s = await t.train(30, { onStep: (m) => m.step >= 3 && t.stop() });
    assert.equal(s.stopped, true);
    assert.ok(s.steps < 30 && s.steps >= 3, `ran ${s.steps} steps`);
    return { steps: s.steps };
  } finally {
    t.dispose();
  }
});

await check("checkpoint and resume continue bit-identically", async () => {
  const losses = async (t, n) => {
    const out = [];
    await t.train(n, { onStep: (m) => out.push(m.loss) });
    return out;
  };
  const a = await Trainer.create(base({ name: "stack-whole" }));
  let whole;
  try {
    whole = await losses(a, 6);
  } finally {
    a.dispose();
  }
  const b = await Trainer.create(base({ name: "stack-split" }));
  let first, path;
  try {
    first = await losses(b, 3);
    path = await b.save();
  } finally {
    b.dispose();
  }
  const c = await Trainer.resume(path);
  try {
    const rest = await losses(c, 3);
    assert.deepEqual([...first, ...rest], whole);
    return { losses: whole };
  } finally {
    c.dispose();
  }
});

// On the CPU this would take the host's memory: GPU only.
if (device === "cuda")
  await check("out of device memory is an exception, and the addon still works after it", async () => {
    let err;
    let t;
    try {
      t = await Trainer.create({
        ...base({ name: "stack-oom" }),
        preset: "ghost-0.1b",
        batch: 2048,
        microBatch: 2048,
        recompute: "none",
      });
      await t.train(1);
    } catch (e) {
      err = e;
    } finally {
      t?.dispose();
    }
    assert.ok(err instanceof Error, "no error for a batch far beyond the GPU's memory");
    const again = await Trainer.create(base({ name: "stack-after-oom" }));
    try {
      const s = await again.train(2);
      assert.ok(Number.isFinite(s.loss));
    } finally {
      again.dispose();
    }
    return { message: String(err.message).slice(0, 300) };
  });

rmSync(home, { recursive: true, force: true });
console.log(JSON.stringify({ check: "summary", ok: failed === 0, failed }));
process.exit(failed ? 1 : 0);
