// The per-layer statistics of a step, in one list: the native column types, the run store's
// layers schema, the facade's recording and the plots all derive from it. It lives with the run
// store, which is built on its own (test/tracking/process.test.ts), and mirrors
// native/include/primal/layer_stats.h (the addon exports that table; test/engine/contracts.test.ts
// checks the two are equal), so adding a statistic is one line there and one line here.

export const LAYER_STATS = [
  // source 'state': describes the layer now (also without a step); 'step': the last applied step.
  // stored: written to layers.arrows per step (the weight count is a layer constant, not repeated).
  // title: the axis title plots use (default: the name).
  { name: "scale", type: "f32", source: "state", stored: true, title: "Ghost Scale s" },
  { name: "dscale", type: "f32", source: "step", stored: true, title: "∂L/∂s" },
  { name: "weights", type: "f32", source: "state", stored: false },
  { name: "flips", type: "i32", source: "step", stored: true, title: "flips per step" },
  { name: "flipFrac", type: "f32", source: "step", stored: true, title: "fraction of weights flipped" },
  { name: "flipsUp", type: "i32", source: "step", stored: true },
  { name: "flipsDown", type: "i32", source: "step", stored: true },
  { name: "zeroToBridge", type: "i32", source: "step", stored: true },
  { name: "bridgeToOne", type: "i32", source: "step", stored: true },
  { name: "oneToBridge", type: "i32", source: "step", stored: true },
  { name: "bridgeToZero", type: "i32", source: "step", stored: true },
  { name: "zeroToOne", type: "i32", source: "step", stored: true },
  { name: "oneToZero", type: "i32", source: "step", stored: true },
  { name: "pMean", type: "f32", source: "state", stored: true, title: "mean flip probability" },
  { name: "pMax", type: "f32", source: "state", stored: true, title: "max flip probability" },
  { name: "occM2", type: "i32", source: "state", stored: true },
  { name: "occM1", type: "i32", source: "state", stored: true },
  { name: "occ0", type: "i32", source: "state", stored: true },
  { name: "occP1", type: "i32", source: "state", stored: true },
  { name: "occP2", type: "i32", source: "state", stored: true },
  { name: "voteActive", type: "f32", source: "state", stored: true, title: "fraction |vote| ≥ 1" },
  { name: "voteSaturated", type: "f32", source: "state", stored: true, title: "fraction |vote| = 127" },
] as const;

type Stat = (typeof LAYER_STATS)[number];
export type LayerStatName = Stat["name"];
type NamesWhere<K extends keyof Stat, V> = Extract<Stat, Record<K, V>>["name"];
export type LayerStatI32 = NamesWhere<"type", "i32">;
export type LayerStatF32 = NamesWhere<"type", "f32">;
/** Statistics written to the run store's layers stream, per step. */
export type StoredLayerStat = NamesWhere<"stored", true>;

/** One typed array per statistic, index = BitLinear layer (what the addon returns). */
export type LayerStatColumns = { [K in LayerStatI32]: Int32Array } & { [K in LayerStatF32]: Float32Array };

function names<K extends keyof Stat, V extends Stat[K]>(key: K, value: V): NamesWhere<K, V>[] {
  return LAYER_STATS.filter((s) => s[key] === value).map((s) => s.name) as NamesWhere<K, V>[];
}

/** The stored statistics in column order (layers.arrows after step/layer/name). */
export const STORED_LAYER_STATS: readonly StoredLayerStat[] = names("stored", true);
/** Statistics that belong to the last applied step (a stateless read reports them as 0). */
export const STEP_LAYER_STATS: readonly NamesWhere<"source", "step">[] = names("source", "step");
export const I32_LAYER_STATS: readonly LayerStatI32[] = names("type", "i32");
