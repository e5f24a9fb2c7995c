// The Poltergeist rules of docs/poltergeist.md observed through the binding: votes move only in backward,
// codes only at the step; the flip probability formula; the exact flips and vote decay of a step,
// re-derived here from an independent JavaScript Philox4x32-10; saturation; the bridge knob.
import { afterEach, describe, expect, it } from "vitest";
import { native, type NativeTrainer, type NativeTrainerConfig } from "../../src/native.js";
import { philox } from "./philox.js";

// ---- an independent Philox4x32-10 (Salmon et al., SC'11) -----------------------------------

/** [lo, hi] 32-bit halves of the 64-bit product of two uint32, exact with doubles. */

const u24 = (r: number) => (r >>> 8) / 16777216;
const seedKey = (seed: number) => [seed % 2 ** 32, Math.floor(seed / 2 ** 32)];

// ---- fixtures -------------------------------------------------------------------------------

const TINY = { vocab: 256, dModel: 64, layers: 2, heads: 4, ffn: 192, seq: 32 };
const open: NativeTrainer[] = [];
afterEach(() => {
  for (const t of open.splice(0)) t.dispose();
});

function make(over: Partial<NativeTrainerConfig> = {}): NativeTrainer {
  const { NativeTrainer: Native } = native();
  const nt = new Native({
    model: TINY,
    quant: "poltergeist",
    actBits: 8,
    batch: 4,
    accum: 1,
    seed: 7,
    warmup: 2,
    totalSteps: 50,
    knobs: {},
    device: "cpu",
    threads: 2,
    ...over,
  });
  open.push(nt);
  // English-like bytes with structure, so gradients are not degenerate.
  const text = "The quick brown fox jumps over the lazy dog. Ghosts flip ternary weights at night. ".repeat(80);
  nt.setTrainData(Int32Array.from(Buffer.from(text, "latin1")));
  return nt;
}

function layerCount(nt: NativeTrainer): number {
  return nt.info().layers.length;
}

/** Votes spread over the whole int8 range, different per layer. */
function votePattern(n: number, salt: number): Int8Array {
  const v = new Int8Array(n);
  for (let i = 0; i < n; i++) v[i] = ((i * 37 + salt * 11) % 255) - 127;
  return v;
}

function codePattern(n: number, salt: number): Int8Array {
  const c = new Int8Array(n);
  for (let i = 0; i < n; i++) c[i] = ((i * 7 + salt) % 5) - 2;
  return c;
}

/**
 * The next rung toward dir: the nearest ladder level beyond the code in that direction, or
 * undefined when there is none. With the bridge off the ladder is -2, 0, +2, so a stray ±1 (only
 * setCodes can make one) moves to the nearest of those.
 */
function nextRung(code: number, dir: number, bridgeOn: boolean): number | undefined {
  if (!Number.isInteger(code) || code < -2 || code > 2) return undefined;
  const ladder = bridgeOn ? [-2, -1, 0, 1, 2] : [-2, 0, 2];
  return dir > 0 ? ladder.find((l) => l > code) : [...ladder].reverse().find((l) => l < code);
}

/**
 * Predicts codes and votes after applyStep from the state before it, per docs/poltergeist.md:
 * p = min(pMax, flipRate*s*|v|/K) in double from fp32 inputs, one Philox call per weight with
 * counter (i, layer, step, 0), key (seed lo, seed hi).
 */
function predictStep(
  code: Int8Array,
  vote: Int8Array,
  o: {
    layer: number;
    step: number;
    seed: number;
    s: number;
    K: number;
    flipRate: number;
    pMax: number;
    voteKeep: number;
    bridgeOn: boolean;
  },
): { code: Int8Array; vote: Int8Array; flips: number } {
  const nc = Int8Array.from(code),
    nv = Int8Array.from(vote);
  const key = seedKey(o.seed);
  const rate = Math.fround(o.flipRate) * Math.fround(o.s);
  let flips = 0;
  for (let i = 0; i < code.length; i++) {
    const v = vote[i]!;
    if (v === 0) continue;
    const [r0, r1] = philox([i, o.layer, o.step, 0], key);
    const p = Math.min(Math.fround(o.pMax), (rate * Math.abs(v)) / o.K);
    const dir = Math.sign(v);
    const target = nextRung(code[i]!, dir, o.bridgeOn);
    if (u24(r0!) < p && target !== undefined) {
      nc[i] = target;
      nv[i] = 0;
      flips++;
    } else {
      const kept = Math.min(127, Math.floor(Math.abs(v) * Math.fround(o.voteKeep) + u24(r1!)));
      nv[i] = dir * kept;
    }
  }
  return { code: nc, vote: nv, flips };
}

// ---- tests ----------------------------------------------------------------------------------

describe("JavaScript Philox reference", () => {
  it("matches the Random123 known-answer vectors", () => {
    expect(philox([0, 0, 0, 0], [0, 0])).toEqual([0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    expect(philox([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])).toEqual([
      0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd,
    ]);
    expect(philox([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])).toEqual([
      0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1,
    ]);
    expect(u24(0xffffffff)).toBeLessThan(1);
  });
});

describe("JavaScript nextRung reference", () => {
  it("walks -2..2 one rung at a time with the bridge on", () => {
    const up = [-2, -1, 0, 1, 2].map((c) => nextRung(c, 1, true));
    const down = [-2, -1, 0, 1, 2].map((c) => nextRung(c, -1, true));
    expect(up).toEqual([-1, 0, 1, 2, undefined]);
    expect(down).toEqual([undefined, -2, -1, 0, 1]);
  });

  it("with the bridge off moves on -2, 0, +2 and takes a stray ±1 to the nearest of them", () => {
    const up = [-2, -1, 0, 1, 2].map((c) => nextRung(c, 1, false));
    const down = [-2, -1, 0, 1, 2].map((c) => nextRung(c, -1, false));
    expect(up).toEqual([0, 0, 2, 2, undefined]);
    expect(down).toEqual([undefined, -2, -2, 0, 0]);
    expect(nextRung(3, -1, false)).toBeUndefined();
  });
});

describe("Poltergeist through the binding", () => {
  it("accumulate() changes votes but not codes; applyStep() moves codes one rung toward the vote and resets it", () => {
    const nt = make({ knobs: { flipRate: 1 } }); // large p so the step visibly flips
    const L = layerCount(nt);
    const c0 = Array.from({ length: L }, (_, l) => nt.codes(l));
    const v0 = Array.from({ length: L }, (_, l) => nt.votes(l));
    expect(v0.every((v) => v.every((x) => x === 0))).toBe(true);
    nt.accumulate();
    let moved = 0;
    const v1 = Array.from({ length: L }, (_, l) => nt.votes(l));
    for (let l = 0; l < L; l++) {
      expect(nt.codes(l)).toEqual(c0[l]);
      expect(v1[l]!.every((x) => Math.abs(x) <= 1)).toBe(true); // one pass from zero: -sign(G)
      moved += v1[l]!.filter((x) => x !== 0).length;
    }
    expect(moved).toBeGreaterThan(0);
    const step = nt.applyStep();
    let changed = 0;
    for (let l = 0; l < L; l++) {
      const c = nt.codes(l),
        v = nt.votes(l);
      let layerFlips = 0;
      const bad: string[] = [];
      for (let i = 0; i < c.length; i++) {
        if (c[i] === c0[l]![i]) continue;
        layerFlips++;
        const vote = v1[l]![i]!;
        // Moved exactly one rung toward the vote's sign, and the vote was reset.
        if (vote === 0 || c[i]! - c0[l]![i]! !== Math.sign(vote) || v[i] !== 0)
          bad.push(`layer ${l} i ${i}: code ${c0[l]![i]} -> ${c[i]}, vote ${vote} -> ${v[i]}`);
      }
      expect(bad.slice(0, 5)).toEqual([]);
      expect(layerFlips).toBe(step.layers.flips[l]);
      changed += layerFlips;
    }
    expect(changed).toBeGreaterThan(0);
  });

  for (const K of [1, 3]) {
    it(`flipProbabilities = min(pMax, flipRate*s*|vote|/K) with accum K=${K}`, () => {
      const nt = make({ accum: K, knobs: { flipRate: 0.013, pMax: 0.4 } });
      const L = layerCount(nt);
      for (const l of [0, 3, L - 1]) {
        const n = nt.codes(l).length;
        const v = votePattern(n, l);
        nt.setVotes(l, v);
        nt.setScale(l, 1.7 + l * 0.1);
        const s = nt.scales()[l]!;
        expect(s).toBe(Math.fround(1.7 + l * 0.1));
        const p = nt.flipProbabilities(l);
        const k = nt.getKnobs();
        const want = new Float32Array(n);
        for (let i = 0; i < n; i++)
          want[i] = Math.min(Math.fround(k.pMax), (Math.fround(k.flipRate) * s * Math.abs(v[i]!)) / K);
        expect(p).toEqual(want);
        expect(Math.max(...p)).toBe(Math.fround(0.4));
      }
    });
  }

  it("a step's flips and vote decay match docs/poltergeist.md exactly (JS Philox, seed above 2^32, K = 3)", () => {
    // The seed's high word is non-zero, so both key words are exercised.
    const seed = 2 ** 32 + 12345;
    const nt = make({ seed, accum: 3, knobs: { flipRate: 0.02, pMax: 0.5, voteKeep: 0.9 } });
    const L = layerCount(nt);
    for (let step = 0; step < 2; step++) {
      for (let k = 0; k < 3; k++) nt.accumulate();
      const before = Array.from({ length: L }, (_, l) => {
        // Known codes (including ±2 pushed outward: no flip, the vote decays) and votes.
        if (l % 2 === 0) {
          nt.setCodes(l, codePattern(nt.codes(l).length, l + step));
          nt.setVotes(l, votePattern(nt.votes(l).length, l + step));
        }
        return { code: nt.codes(l), vote: nt.votes(l) };
      });
      const knobs = nt.getKnobs();
      const r = nt.applyStep();
      expect(r.step).toBe(step + 1);
      const scales = nt.scales(); // s after this step's update is the one p uses
      let total = 0;
      for (let l = 0; l < L; l++) {
        const want = predictStep(before[l]!.code, before[l]!.vote, {
          layer: l,
          step,
          seed,
          s: scales[l]!,
          K: 3,
          flipRate: knobs.flipRate,
          pMax: knobs.pMax,
          voteKeep: knobs.voteKeep,
          bridgeOn: true,
        });
        expect(nt.codes(l)).toEqual(want.code);
        expect(nt.votes(l)).toEqual(want.vote);
        expect(r.layers.flips[l]).toBe(want.flips);
        total += want.flips;
      }
      expect(total).toBeGreaterThan(100);
    }
  });

  it("vote decay alone: flipRate 0 flips nothing and votes become sign(v)*floor(|v|*voteKeep + u2)", () => {
    const seed = 99;
    const nt = make({ seed, knobs: { flipRate: 0, voteKeep: 0.95 } });
    const L = layerCount(nt);
    nt.accumulate();
    const v1 = Array.from({ length: L }, (_, l) => nt.votes(l));
    // One layer with the whole int8 range, to see large votes decay.
    const n0 = v1[0]!.length;
    v1[0] = votePattern(n0, 3);
    nt.setVotes(0, v1[0]);
    const c1 = Array.from({ length: L }, (_, l) => nt.codes(l));
    const r = nt.applyStep();
    for (let l = 0; l < L; l++) {
      expect(nt.codes(l)).toEqual(c1[l]);
      expect(r.layers.flips[l]).toBe(0);
      const got = nt.votes(l);
      const key = seedKey(seed);
      const want = new Int8Array(got.length);
      for (let i = 0; i < got.length; i++) {
        const v = v1[l]![i]!;
        if (v === 0) continue; // a zero vote stays zero
        const u2 = u24(philox([i, l, 0, 0], key)[1]!);
        want[i] = Math.sign(v) * Math.floor(Math.abs(v) * Math.fround(0.95) + u2);
      }
      expect(got).toEqual(want);
    }
  });

  it("with the bridge off the ladder is -2 <-> 0 <-> +2", () => {
    const seed = 5;
    const nt = make({ seed, knobs: { flipRate: 0.05, bridge: null } });
    nt.accumulate();
    const n = nt.codes(1).length;
    const code = new Int8Array(n);
    for (let i = 0; i < n; i++) code[i] = [-2, 0, 2][i % 3]!;
    nt.setCodes(1, code);
    nt.setVotes(1, votePattern(n, 1));
    const k = nt.getKnobs();
    expect(k.bridge).toBeNull();
    nt.applyStep();
    const want = predictStep(code, votePattern(n, 1), {
      layer: 1,
      step: 0,
      seed,
      s: nt.scales()[1]!,
      K: 1,
      flipRate: k.flipRate,
      pMax: k.pMax,
      voteKeep: k.voteKeep,
      bridgeOn: false,
    });
    const got = nt.codes(1);
    expect(got).toEqual(want.code);
    expect(want.flips).toBeGreaterThan(50);
    expect(got.every((c) => c === -2 || c === 0 || c === 2)).toBe(true);
  });

  it("with the bridge off a stray ±1 code moves to the nearest ladder level toward its vote", () => {
    const seed = 17;
    const nt = make({ seed, knobs: { flipRate: 0.5, pMax: 0.9, bridge: null } });
    nt.accumulate();
    const l = 1;
    const n = nt.codes(l).length;
    const code = codePattern(n, 2); // all five codes, ±1 included
    const vote = votePattern(n, 5);
    nt.setCodes(l, code);
    nt.setVotes(l, vote);
    const k = nt.getKnobs();
    const r = nt.applyStep();
    const want = predictStep(code, vote, {
      layer: l,
      step: 0,
      seed,
      s: nt.scales()[l]!,
      K: 1,
      flipRate: k.flipRate,
      pMax: k.pMax,
      voteKeep: k.voteKeep,
      bridgeOn: false,
    });
    const got = nt.codes(l);
    expect(got).toEqual(want.code);
    expect(nt.votes(l)).toEqual(want.vote);
    expect(r.layers.flips[l]).toBe(want.flips);
    // Every move of the four stray cases happened, and each went where the ladder says.
    const moves = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      if (Math.abs(code[i]!) !== 1 || got[i] === code[i]) continue;
      const key = `${code[i]}->${got[i]}`;
      moves.set(key, (moves.get(key) ?? 0) + 1);
    }
    expect([...moves.keys()].sort()).toEqual(["-1->-2", "-1->0", "1->0", "1->2"]);
    for (const count of moves.values()) expect(count).toBeGreaterThan(10);
  });

  it("votes saturate at ±127 and never wrap", () => {
    const nt = make();
    const L = layerCount(nt);
    // Start every vote at an extreme: one more backward pass pushes about half of them outward.
    const ext = Array.from({ length: L }, (_, l) => {
      const n = nt.votes(l).length;
      return Int8Array.from({ length: n }, (_, i) => (i % 2 ? 127 : -127));
    });
    ext.forEach((v, l) => nt.setVotes(l, v));
    nt.accumulate();
    let heldAtEdge = 0,
      movedIn = 0,
      other = 0;
    for (let l = 0; l < L; l++) {
      const v = nt.votes(l);
      for (let i = 0; i < v.length; i++) {
        const e = ext[l]![i]!;
        // Pushed outward and held at the edge, or moved inward by one; never wrapped.
        if (v[i] === e) heldAtEdge++;
        else if (v[i] === e - Math.sign(e)) movedIn++;
        else other++;
      }
    }
    expect(other).toBe(0);
    expect(heldAtEdge).toBeGreaterThan(0);
    expect(movedIn).toBeGreaterThan(0);
    // And from zero, the 135 backward passes of one step saturate consistent votes.
    const nt2 = make({ model: { ...TINY, seq: 16 }, batch: 1, accum: 135 });
    const tokens = Int32Array.from(Buffer.from("ghost ghost ghost ghost ", "latin1"));
    const inputs = tokens.subarray(0, 16),
      targets = tokens.subarray(1, 17);
    for (let i = 0; i < 3; i++) nt2.batchLoss(inputs, targets, 1, 16); // forward only: no votes
    expect(nt2.votes(0).every((x) => x === 0)).toBe(true);
    for (let i = 0; i < 135; i++) nt2.accumulate();
    let sat = 0,
      wrapped = 0;
    for (let l = 0; l < L; l++)
      for (const x of nt2.votes(l)) {
        if (x === -128) wrapped++;
        if (Math.abs(x) === 127) sat++;
      }
    expect(wrapped).toBe(0);
    expect(sat).toBeGreaterThan(0);
    expect(nt2.layerStats().voteSaturated.some((f) => f > 0)).toBe(true);
  });

  it("bridge changes apply to the very next forward; null resolves ±1 codes by the last b", () => {
    const nt = make();
    const l = 2;
    const codes = nt.codes(l);
    const unit = nt.gamma0()[l]! * nt.scales()[l]!;
    const lut = (c: number, b: number) => Math.sign(c) * (Math.abs(c) === 2 ? 1 : Math.abs(c) === 1 ? b : 0);
    const check = (w: Float32Array, c: Int8Array, b: number) => {
      let worst = 0;
      for (let i = 0; i < c.length; i++) worst = Math.max(worst, Math.abs(w[i]! - unit * lut(c[i]!, b)));
      expect(worst).toBeLessThan(1e-6 * unit);
    };
    check(nt.weights(l), codes, Math.fround(2 / 3));
    expect(codes.some((c) => Math.abs(c) === 1)).toBe(true);
    const text = Int32Array.from(Buffer.from("Ghosts flip ternary weights at night, quietly.", "latin1"));
    const inputs = text.subarray(0, 32),
      targets = text.subarray(1, 33);
    const before = nt.batchLoss(inputs, targets, 1, 32);
    nt.setKnobs({ bridge: 0.8 });
    check(nt.weights(l), codes, Math.fround(0.8));
    expect(nt.batchLoss(inputs, targets, 1, 32)).not.toBe(before);
    expect(nt.codes(l)).toEqual(codes); // changing b never touches codes
    // Off with b = 0.8 >= 0.5: ±1 -> ±2.
    expect(nt.setKnobs({ bridge: null }).bridge).toBeNull();
    const off = nt.codes(l);
    expect(off).toEqual(codes.map((c) => (Math.abs(c) === 1 ? 2 * c : c)));
    check(nt.weights(l), off, 0.8);
    // Back on restores the last value.
    expect(nt.setKnobs({ bridge: 0.8 }).bridge).toBeCloseTo(0.8, 6);

    // Off with b = 0.3 < 0.5: ±1 -> 0.
    const nt2 = make();
    nt2.setKnobs({ bridge: 0.3 });
    const c2 = nt2.codes(l);
    nt2.setKnobs({ bridge: null });
    expect(nt2.codes(l)).toEqual(c2.map((c) => (Math.abs(c) === 1 ? 0 : c)));
  });
});
