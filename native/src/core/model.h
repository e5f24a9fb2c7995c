// The Ghost transformer (docs/design.md) over any Backend, laid out like llm.c: its weights, one table
// of every buffer the passes use, and forward/backward pairs (model.cpp).
//
// What lives where:
//   model.{h,cpp}    weights and their buffers, the buffer table, forward/backward, the classifier,
//                    memory accounting (memory(), and the prediction the planner uses).
//   trainer.cpp      the loop: data windows, AdamW for the fp weights and for the Ghost Scales,
//                    Poltergeist vote/flip steps, weight initialisation, introspection.
//   generate.cpp     text generation (forward + token sampling).
//   memory_plan.cpp  the candidate plans, each sized by Model::plannedMemory.
//   checkpoint.cpp   save/load of the weights and the optimizer state.
//
// Shapes in the comments: B sequences of T tokens (N = B*T), C = dModel = H heads * D, F = ffn,
// V = vocab, Vp = padded vocab, L blocks, S activation sets (L, or 1 under block recompute).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "primal/backend.h"
#include "primal/trainer.h"

namespace primal {

// `count` elements of device memory owned by a backend, freed when the buffer goes away.
// Move-only. Converts to T* so the passes read like plain pointer code.
template <typename T>
class DBuf {
 public:
  DBuf() = default;
  DBuf(Backend& be, size_t count)
      : be_(&be), p_(count ? static_cast<T*>(be.alloc(count * sizeof(T))) : nullptr), n_(count) {}
  ~DBuf() { reset(); }
  DBuf(DBuf&& o) noexcept : be_(o.be_), p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DBuf& operator=(DBuf&& o) noexcept {
    if (this != &o) {
      reset();
      be_ = o.be_;
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DBuf(const DBuf&) = delete;
  DBuf& operator=(const DBuf&) = delete;

  T* data() const { return p_; }
  operator T*() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

 private:
  void reset() {
    if (p_) be_->free(p_);
    p_ = nullptr;
    n_ = 0;
  }
  Backend* be_ = nullptr;
  T* p_ = nullptr;
  size_t n_ = 0;
};

// The sizes the buffer table is written in, for a resolved plan (cfg.microBatch, cfg.recompute).
struct ModelDims {
  explicit ModelDims(const TrainConfig& cfg);
  size_t B, T, N, C, F, H, V, L;
  size_t S;                        // activation sets: L, or 1 under block recompute
  size_t maxW;                     // elements of the largest BitLinear weight
  size_t maxCF;                    // max(C, F): the widest activation a BitLinear reads
  size_t bitW;                     // elements of all BitLinear weights together (7 per block)
  size_t fpW;                      // elements of all fp parameters together
  size_t chunks;                   // micro-batch chunks per step: accum * batch / microBatch
  size_t nl;                       // BitLinear layers (7 per block)
  size_t fpArena, fpDecay;         // fp arena elements (each parameter aligned), the decay part
  size_t bitArena;                 // bytes of one int8 arena over all BitLinears (codes or votes)
  size_t ternaryBytes;             // codes + votes (poltergeist) + the Ghost Scale state
  size_t statsBytes;               // the step statistics (StepStats)
  bool actQuant, quantized, polt;  // actBits > 0; quant != fp; quant == poltergeist
};

// Where each weight lives in the arenas (model.cpp, arenaLayout): fp parameters at element
// offsets of the fp arenas (weights, gradients, Adam m and v share one layout), the decaying ones
// first; BitLinears at byte offsets of the int8 code and vote arenas. Offsets are aligned
// (kFpAlign floats, kBitAlign bytes) so every tensor starts where its own allocation would.
constexpr size_t kFpAlign = 64, kBitAlign = 64;
struct ArenaLayout {
  struct Fp {
    size_t offset, n;
    bool decay;
  };
  std::vector<Fp> fp;       // per fp parameter, in weight order
  std::vector<size_t> bit;  // per BitLinear: byte offset in the int8 arenas
  size_t fpArena = 0, fpDecay = 0, bitArena = 0;
};
ArenaLayout arenaLayout(const TrainConfig& cfg);

// The step statistics (backend.h: StepHead) in one device allocation of `layers` BitLinears:
//   accumulators  StepHead, then dL/ds per layer (double)          written while the step runs
//   report        a copy of the accumulators taken at the step's end, then per layer: the sum
//                 of W^2 (fp) or |W| (ste) of the updated weight (double), the flip statistics
//                 (FlipStats) and the Ghost Scale s after the update (float)
// The host reads the report once per step; the accumulators are zeroed for the next one.
struct StepStatsLayout {
  explicit StepStatsLayout(size_t layers);
  size_t layers;
  size_t accBytes;                                // StepHead + ds
  size_t report, rWeight, rFlips, rScale, bytes;  // byte offsets of the report's parts; the total
  size_t reportBytes() const { return bytes - report; }
};

// Every device buffer of the passes, in allocation order: its name, element type, the
// MemoryReport field it counts in and its size in elements, written in terms of `d` (ModelDims).
// ONE(name, type, field, elements) is a single buffer; MANY(name, type, field, copies, elements)
// one buffer per activation set or residual stream, each of the shape in the comment. Allocation,
// freeing, Model::memory() and the memory planner all walk this table: adding a buffer is adding
// a row. Norm outputs, the SwiGLU product, quantized activations and materialized BitLinear
// weights are not kept but recomputed on use (bit-identically) into the shared scratch rows.
// clang-format off (the table stays aligned)
#define PRIMAL_MODEL_BUFFERS(ONE, MANY)                                                                      \
  /* The weights and their optimizer state: one arena each (ArenaLayout). */                                 \
  ONE(paramArena, float, params, d.fpArena) /* every fp parameter (embedding, norms, fp/ste latent W) */     \
  ONE(gradArena, float, grads, d.fpArena)   /* their gradients */                                            \
  ONE(adamM, float, optimizer, d.fpArena)   /* AdamW first moments */                                        \
  ONE(adamV, float, optimizer, d.fpArena)   /* AdamW second moments */                                       \
  ONE(ternary, int8_t, ternaryState, d.ternaryBytes) /* codes, votes (bitArena each), s, sM, sV, gamma0 */   \
  /* Kept for backward, per activation set. */                                                               \
  MANY(resMid, float, activations, d.S, d.N* d.C)   /* (B,T,C)   residual after attention */                 \
  MANY(q, float, activations, d.S, d.N* d.C)        /* (B,T,H,D) queries, RoPE applied */                    \
  MANY(k, float, activations, d.S, d.N* d.C)        /* (B,T,H,D) keys, RoPE applied */                       \
  MANY(v, float, activations, d.S, d.N* d.C)        /* (B,T,H,D) values */                                   \
  MANY(att, float, activations, d.S, d.N* d.C)      /* (B,T,H,D) attention output, before o */               \
  MANY(gate, float, activations, d.S, d.N* d.F)     /* (B,T,F)   gate projection */                          \
  MANY(up, float, activations, d.S, d.N* d.F)       /* (B,T,F)   up projection */                            \
  MANY(rstd1, float, activations, d.S, d.N)         /* (B,T)     1/rms of the block input */                 \
  MANY(rstd2, float, activations, d.S, d.N)         /* (B,T)     1/rms of resMid */                          \
  MANY(lse, float, activations, d.S, d.B* d.H* d.T) /* (B,H,T)  attention log-sum-exp per query */           \
  /* Kept for backward: the residual streams and the final norm. */                                          \
  MANY(res, float, activations, d.L + 1, d.N * d.C) /* (B,T,C)   input of block l; res[L]: of norm_f */      \
  ONE(lnf, float, activations, d.N* d.C)            /* (B,T,C)   final norm output */                        \
  ONE(rstdf, float, activations, d.N)               /* (B,T)     its 1/rms */                                \
  /* Gradients of activations, shared by all blocks. */                                                      \
  ONE(dlnf, float, scratch, d.N* d.C)  /* (B,T,C)   dL/dlnf, from the classifier */                          \
  ONE(dres, float, scratch, d.N* d.C)  /* (B,T,C)   dL/d(residual stream) */                                 \
  ONE(dln, float, scratch, d.N* d.C)   /* (B,T,C)   dL/d(norm output) */                                     \
  ONE(dq, float, scratch, d.N* d.C)    /* (B,T,H,D) */                                                       \
  ONE(dk, float, scratch, d.N* d.C)    /* (B,T,H,D) */                                                       \
  ONE(dv, float, scratch, d.N* d.C)    /* (B,T,H,D) */                                                       \
  ONE(datt, float, scratch, d.N* d.C)  /* (B,T,H,D) */                                                       \
  ONE(lnS, float, scratch, d.N* d.C)   /* (B,T,C)   norm output of the block at hand */                      \
  ONE(dgate, float, scratch, d.N* d.F) /* (B,T,F) */                                                         \
  ONE(dup, float, scratch, d.N* d.F)   /* (B,T,F) */                                                         \
  ONE(dh, float, scratch, d.N* d.F)    /* (B,T,F)   dL/d(SwiGLU product) */                                  \
  ONE(hS, float, scratch, d.N* d.F)    /* (B,T,F)   SwiGLU product of the block at hand */                   \
  /* Workspaces. */                                                                                          \
  ONE(losses, float, scratch, d.N)                             /* (B,T)     per-token loss (nats) */         \
  ONE(qscratch, float, scratch, d.actQuant ? d.N* d.maxCF : 0) /* (B,T,C|F) quantized activation */          \
  ONE(wscratch, float, scratch, d.quantized ? d.maxW : 0) /* (rows,cols) materialized BitLinear weight */    \
  ONE(gscratch, float, scratch, d.polt ? d.maxW : 0)      /* (rows,cols) BitLinear weight gradient, voted */ \
  ONE(steAbs, double, scratch,                                                                               \
      d.quantized && !d.polt ? d.nl : 0)                   /* (layers) ste: sum |W| of each latent W */      \
  ONE(logitsBuf, float, scratch, d.V)                      /* (V)       one row of logits (generation) */    \
  ONE(voteUndo, int8_t, scratch, d.polt ? d.bitArena : 0)  /* (vote arena) votes before the step, restored   \
                                                              if the step is refused */                      \
  ONE(gradSum, float, grads, d.chunks > 1 ? d.fpArena : 0) /* (fp arena) the step's gradient sum while       \
                                                             a later chunk computes its own from zero */     \
  ONE(inTok, int32_t, scratch, d.chunks* d.N)    /* (K,B,T)   input token ids of every chunk of the step */  \
  ONE(tgtTok, int32_t, scratch, d.chunks* d.N)   /* (K,B,T)   target ids, < 0 unscored */                    \
  ONE(stepStats, uint8_t, scratch, d.statsBytes) /* StepStatsLayout: the step's accumulators and report */
// clang-format on

// An fp32 weight (of `shape`) with its gradient and AdamW moments: views at `offset` into the
// model's four fp arenas.
struct FpParam {
  std::string name;
  std::vector<int> shape;
  size_t n = 0, offset = 0;
  bool decay = false;
  float *w = nullptr, *g = nullptr, *m = nullptr, *v = nullptr;
};

// One BitLinear y = x . W^T, W (rows,cols) = (out,in). Poltergeist keeps int8 codes and votes in
// the ternary arena; fp/ste keep a latent fp weight in params. Every layer's Ghost Scale state
// (s, its AdamW moments, gamma0) lives in device memory too (Model::ghostS() ...), and its dL/ds
// in the step statistics.
struct BitLayer {
  int rows = 0, cols = 0;
  size_t n = 0;
  int param = -1;                           // fp/ste: index of its latent weight in params
  size_t offset = 0;                        // byte offset in the code and vote arenas
  int8_t *code = nullptr, *vote = nullptr;  // poltergeist: (rows,cols) each
};

// Names of the seven BitLinears of a block, in layer order.
inline const char* const kLinearNames[7] = {"attn.q",   "attn.k", "attn.v",  "attn.o",
                                            "mlp.gate", "mlp.up", "mlp.down"};

struct Model {
  // Allocates every weight and buffer (gradients, moments and votes zeroed; weights left for the
  // trainer to initialise). cfg holds the resolved plan (microBatch, recompute).
  Model(Backend& backend, const TrainConfig& cfg);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Bytes held, by MemoryReport field (device fields left 0). plannedMemory predicts the same
  // report from a config alone, and in `deviceBytes` the device memory it amounts to.
  MemoryReport memory() const;
  static MemoryReport plannedMemory(const TrainConfig& cfg, size_t* deviceBytes);

  // Passes over B*T tokens of inTok/tgtTok (B <= microBatch, T <= seq) from chunk `chunk`'s rows
  // (chunk c starts at row c * microBatch * seq; upload writes chunk 0's).
  void upload(const std::vector<int32_t>& in, const std::vector<int32_t>& tg);
  void forward(int B, int T);   // inTok -> lnf
  void backward(int B, int T);  // dlnf -> parameter gradients (fp) and votes (Poltergeist)
  // Classifier over lnf: per-token losses (and dlnf and the tied embedding's gradient when
  // withGrad); returns the loss sum (nats) over targets >= 0 and their count (a host round trip).
  std::pair<double, double> classify(const std::vector<int32_t>& targets, int Nt, bool withGrad,
                                     float gradScale);
  // Training: classifier with gradients, and the chunk's loss into the step statistics (stepLoss);
  // nothing returns to the host.
  void classifyStep(int Nt, float gradScale);
  // Logits (V) of row `row` of lnf, to the host.
  void logits(size_t row, float* hostOut);
  // The weight (rows,cols) forward/backward use for BitLinear li, materialized when quantized.
  // STE computes a layer's gamma at its first materialization after prepareWeights() (forward()
  // calls it; the backward and a block's recompute reuse it: the weights have not changed).
  const float* weightFor(int li);
  void prepareWeights() { steFresh.assign(lin.size(), 0); }
  // Throws Error when an id is outside [0, V) (targets may be negative: unscored).
  void checkTokens(const int32_t* t, size_t n, bool targets, const char* what) const;

  int chunk = 0;  // the micro-batch chunk whose token rows the passes read

  // The Ghost Scale state of every BitLinear (nl floats each, device memory) and the step
  // statistics (StepStatsLayout) as typed views.
  float* ghostS() const { return ghostBase(0); }
  float* ghostM() const { return ghostBase(1); }
  float* ghostV() const { return ghostBase(2); }
  float* ghostGamma0() const { return ghostBase(3); }
  int8_t* codes() const { return ternary.data(); }
  int8_t* votes() const { return ternary.data() + dims.bitArena; }
  StepHead* head() const { return reinterpret_cast<StepHead*>(stepStats.data()); }
  double* ds() const { return reinterpret_cast<double*>(stepStats.data() + sizeof(StepHead)); }
  uint8_t* report() const { return stepStats.data() + stats.report; }
  double* reportWeight() const { return reinterpret_cast<double*>(stepStats.data() + stats.rWeight); }
  FlipStats* reportFlips() const { return reinterpret_cast<FlipStats*>(stepStats.data() + stats.rFlips); }
  float* reportScale() const { return reinterpret_cast<float*>(stepStats.data() + stats.rScale); }
  // Segment tables (pairs of element offsets, for Backend::sumSegments): every fp parameter in
  // weight order (over the fp arenas), and fp/ste: every BitLinear's latent weight in layer order.
  std::vector<size_t> paramSegments, linearSegments;

  int C() const { return cfg.model.dModel; }
  int F() const { return cfg.model.ffn; }
  int L() const { return cfg.model.layers; }
  int V() const { return cfg.model.vocab; }
  bool polt() const { return cfg.quant == Quant::Poltergeist; }

  Backend* be = nullptr;
  TrainConfig cfg;  // the trainer's, kept in step with it (knobs, seed)
  ModelDims dims;
  StepStatsLayout stats;

  // Weights, in Philox init order and checkpoint order: wte, per block attn_norm, mlp_norm and
  // seven BitLinears (latent fp weights in params for fp/ste), norm_f.
  std::vector<FpParam> params;
  int pWte = 0, pNormF = 0;         // wte: (Vp,C) tied embedding; norm_f: (C)
  std::vector<int> pNorm1, pNorm2;  // per block: attn_norm, mlp_norm (C)
  std::vector<BitLayer> lin;        // 7 per block: q, k, v, o (C,C); gate, up (F,C); down (C,F)

#define PRIMAL_DECLARE_ONE(name, T, field, elems) DBuf<T> name;
#define PRIMAL_DECLARE_MANY(name, T, field, copies, elems) std::vector<DBuf<T>> name;
  PRIMAL_MODEL_BUFFERS(PRIMAL_DECLARE_ONE, PRIMAL_DECLARE_MANY)
#undef PRIMAL_DECLARE_ONE
#undef PRIMAL_DECLARE_MANY

  std::vector<float> hostLoss;  // (B,T) losses on the host
  std::vector<char> steFresh;   // ste: the layer's gamma (steAbs) is that of its current weights

 private:
  int addParam(const std::string& name, std::vector<int> shape, const ArenaLayout::Fp& at);
  float* ghostBase(int which) const {
    return reinterpret_cast<float*>(ternary.data() + 2 * dims.bitArena) +
           static_cast<size_t>(which) * dims.nl;
  }
  const int32_t* inRows() const { return inTok.data() + static_cast<size_t>(chunk) * dims.N; }
  const int32_t* tgtRows() const { return tgtTok.data() + static_cast<size_t>(chunk) * dims.N; }
  bool recomputing() const { return cfg.recompute == Recompute::Block; }
  // The activation set of block b: its own, or the one shared set under block recompute.
  size_t setOf(int b) const { return recomputing() ? 0 : static_cast<size_t>(b); }

  const float* actQ(const float* x, int rows, int cols);
  void linearForward(int li, const float* x, float* y, int Nt, float beta);
  void linearBackwardData(int li, const float* dy, float* dx, int Nt, float beta);
  void linearBackwardWeight(int li, const float* dy, const float* x, int Nt);
  void blockForward(int b, int B, int T, bool withOutput);
  void blockBackward(int b, int B, int T);
};

}  // namespace primal
