// The per-layer statistics a step reports (docs/design.md, "Telemetry"), as one table: name, element
// type and how the value comes from a LayerStep. The binding turns each entry into one typed-array
// column and exports the names; the TypeScript list (src/tracking/layerStats.ts) is tested
// against them, so adding a statistic is one line here plus one line there.
#pragma once
#include <cstdint>

#include "primal/trainer.h"

namespace primal {

enum class LayerStatType { F32, I32 };

struct LayerStatDef {
  const char* name;
  LayerStatType type;
  float (*f32)(const LayerStep&);    // set when type == F32
  int32_t (*i32)(const LayerStep&);  // set when type == I32
};

namespace layer_stat_detail {
// Code index = code + 2: 0 = -1, 1 = -b, 2 = 0, 3 = +b, 4 = +1.
inline uint64_t tr(const LayerStep& l, int from, int to) { return l.flips.transitions[from][to]; }
inline double perWeight(const LayerStep& l, uint64_t count) {
  return l.weights ? static_cast<double>(count) / l.weights : 0.0;
}
constexpr LayerStatDef f32(const char* name, float (*get)(const LayerStep&)) {
  return {name, LayerStatType::F32, get, nullptr};
}
constexpr LayerStatDef i32(const char* name, int32_t (*get)(const LayerStep&)) {
  return {name, LayerStatType::I32, nullptr, get};
}
}  // namespace layer_stat_detail

// Column order is the order of the run store's layers stream (docs/run-store.md), with `weights`
// (a layer constant the store does not repeat per step) after dscale.
inline constexpr LayerStatDef kLayerStats[] = {
    layer_stat_detail::f32("scale", [](const LayerStep& l) { return l.scale; }),
    layer_stat_detail::f32("dscale", [](const LayerStep& l) { return l.dscale; }),
    layer_stat_detail::f32(
        "weights", [](const LayerStep& l) { return static_cast<float>(static_cast<double>(l.weights)); }),
    layer_stat_detail::i32(
        "flips",
        [](const LayerStep& l) { return static_cast<int32_t>(l.flips.flipsUp + l.flips.flipsDown); }),
    layer_stat_detail::f32("flipFrac",
                           [](const LayerStep& l) {
                             return static_cast<float>(
                                 layer_stat_detail::perWeight(l, l.flips.flipsUp + l.flips.flipsDown));
                           }),
    layer_stat_detail::i32("flipsUp",
                           [](const LayerStep& l) { return static_cast<int32_t>(l.flips.flipsUp); }),
    layer_stat_detail::i32("flipsDown",
                           [](const LayerStep& l) { return static_cast<int32_t>(l.flips.flipsDown); }),
    layer_stat_detail::i32("zeroToBridge",
                           [](const LayerStep& l) {
                             return static_cast<int32_t>(layer_stat_detail::tr(l, 2, 1) +
                                                         layer_stat_detail::tr(l, 2, 3));
                           }),
    layer_stat_detail::i32("bridgeToOne",
                           [](const LayerStep& l) {
                             return static_cast<int32_t>(layer_stat_detail::tr(l, 1, 0) +
                                                         layer_stat_detail::tr(l, 3, 4));
                           }),
    layer_stat_detail::i32("oneToBridge",
                           [](const LayerStep& l) {
                             return static_cast<int32_t>(layer_stat_detail::tr(l, 0, 1) +
                                                         layer_stat_detail::tr(l, 4, 3));
                           }),
    layer_stat_detail::i32("bridgeToZero",
                           [](const LayerStep& l) {
                             return static_cast<int32_t>(layer_stat_detail::tr(l, 1, 2) +
                                                         layer_stat_detail::tr(l, 3, 2));
                           }),
    layer_stat_detail::i32("zeroToOne",
                           [](const LayerStep& l) {
                             return static_cast<int32_t>(layer_stat_detail::tr(l, 2, 0) +
                                                         layer_stat_detail::tr(l, 2, 4));
                           }),
    layer_stat_detail::i32("oneToZero",
                           [](const LayerStep& l) {
                             return static_cast<int32_t>(layer_stat_detail::tr(l, 0, 2) +
                                                         layer_stat_detail::tr(l, 4, 2));
                           }),
    layer_stat_detail::f32(
        "pMean",
        [](const LayerStep& l) { return static_cast<float>(l.weights ? l.flips.pSum / l.weights : 0.0); }),
    layer_stat_detail::f32("pMax", [](const LayerStep& l) { return l.flips.pMax; }),
    layer_stat_detail::i32("occM2",
                           [](const LayerStep& l) { return static_cast<int32_t>(l.flips.occupancy[0]); }),
    layer_stat_detail::i32("occM1",
                           [](const LayerStep& l) { return static_cast<int32_t>(l.flips.occupancy[1]); }),
    layer_stat_detail::i32("occ0",
                           [](const LayerStep& l) { return static_cast<int32_t>(l.flips.occupancy[2]); }),
    layer_stat_detail::i32("occP1",
                           [](const LayerStep& l) { return static_cast<int32_t>(l.flips.occupancy[3]); }),
    layer_stat_detail::i32("occP2",
                           [](const LayerStep& l) { return static_cast<int32_t>(l.flips.occupancy[4]); }),
    layer_stat_detail::f32("voteActive",
                           [](const LayerStep& l) {
                             return static_cast<float>(layer_stat_detail::perWeight(l, l.flips.votesNonZero));
                           }),
    layer_stat_detail::f32("voteSaturated",
                           [](const LayerStep& l) {
                             return static_cast<float>(
                                 layer_stat_detail::perWeight(l, l.flips.votesSaturated));
                           }),
};

inline const char* layerStatTypeName(LayerStatType t) { return t == LayerStatType::F32 ? "f32" : "i32"; }

}  // namespace primal
