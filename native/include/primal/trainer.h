// The Ghost transformer and its trainer (docs/design.md), written once against primal::Backend.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "primal/backend.h"
#include "primal/knobs.h"

namespace primal {

enum class Quant { FP, STE, Poltergeist };
const char* quantName(Quant q);
Quant parseQuant(const std::string& s);  // throws Error on an unknown name

// Activation recompute. None: every block keeps its activations for backward. Block: only each
// block's input (the residual stream) is kept; backward reruns the block's forward into one
// shared set of buffers first. Same results (the recomputed values are bit-identical), about one
// extra forward pass of compute, activation memory of one block instead of all of them.
// Auto: chosen by the memory planner (None when no budget is set).
enum class Recompute { None, Block, Auto };
const char* recomputeName(Recompute r);
Recompute parseRecompute(const std::string& s);  // "none" | "block" | "auto"

struct ModelConfig {
  int vocab = 256;
  int dModel = 64;
  int layers = 2;
  int heads = 4;
  int ffn = 192;
  int seq = 64;
  float ropeTheta = 10000.0f;
  float normEps = 1e-5f;
  float initStd = 0.02f;
  // Rows of the embedding table: vocab rounded up to a multiple of 64 (50257 -> 50304) so GEMMs
  // stay aligned; padded rows are never scored.
  int paddedVocab() const { return vocab <= 256 ? vocab : ((vocab + 63) / 64) * 64; }
  void validate() const;  // throws Error naming the bad field
};

// A run's settings, fixed when the trainer is made, with the knobs it starts from. These defaults
// are the ones src/config.ts declares to users (test/engine/contracts.test.ts checks they agree);
// the numeric fields are read from JavaScript by name through config_fields.h.
struct TrainConfig {
  ModelConfig model;
  Quant quant = Quant::Poltergeist;
  int actBits = 8;  // 0 = off
  int batch = 16;   // B windows per micro-batch
  int accum = 1;    // K micro-batches per optimizer step
  // Execution plan (memory, not the data): each micro-batch of B windows runs as B/microBatch
  // chunks of microBatch windows (0 = auto: B, or the planner's choice under a budget). The
  // windows, loss and fp gradients are those of (B, K); Poltergeist votes are cast per chunk and
  // the flip probability divides by the number of chunks per step (K in docs/poltergeist.md).
  int microBatch = 0;
  Recompute recompute = Recompute::Auto;
  // Bytes the trainer may allocate (parameters, optimizer, activations, workspaces: the
  // peakMemoryBytes metric); 0 = no budget. With a budget, microBatch/recompute left on auto are
  // chosen to fit it, and construction fails with the smallest possible footprint if nothing fits.
  uint64_t memoryBudget = 0;
  uint64_t seed = 1;
  int warmup = 30;
  int totalSteps = 300;     // length of the cosine schedule
  float minLrRatio = 0.1f;  // cosine floor as a fraction of the peak lr
  float beta1 = 0.9f, beta2 = 0.95f, adamEps = 1e-8f;
  float weightDecay = 0.1f;
  float gradClip = 1.0f;  // <= 0: off
  float scaleMin = 1e-4f;
  Knobs knobs;
  void validate() const;
};

// Per-layer telemetry of one step (index = BitLinear layer, 7 per block).
struct LayerStep {
  float scale = 0, dscale = 0;
  FlipStats flips{};
  uint64_t weights = 0;
};

struct StepResult {
  int step = 0;    // the step just completed (1-based count of applied steps)
  float loss = 0;  // mean train loss over the step's micro-batches (nats/token)
  float lr = 0;
  float gradNorm = 0;  // global norm of the fp-parameter gradient before clipping
  double tokens = 0;   // cumulative tokens trained
  float stepMs = 0;
  size_t peakBytes = 0;  // device high-water mark
  std::vector<LayerStep> layers;
};

struct MemoryReport {
  size_t params = 0;        // fp32 parameters (embedding, norms, latent W for fp/ste)
  size_t optimizer = 0;     // AdamW moments
  size_t grads = 0;         // fp gradients
  size_t ternaryState = 0;  // codes + votes + per-layer scale state (poltergeist)
  size_t ternaryWeights = 0;
  size_t activations = 0;  // kept for backward
  size_t scratch = 0;      // workspaces (weight materialization, G, classifier chunks)
  size_t deviceInUse = 0;
  size_t devicePeak = 0;
};

// One candidate execution plan and its predicted peak (the same accounting as MemoryReport).
struct MemoryPlan {
  int microBatch = 0;
  Recompute recompute = Recompute::None;
  MemoryReport estimate;      // params .. scratch filled in; device fields unused
  size_t backendScratch = 0;  // the backend's own workspaces (Backend::scratchBytes)
  size_t totalBytes = 0;      // predicted peakBytes of a training step
  bool fits = true;           // totalBytes <= budget (always true without a budget)
};

// Every candidate (micro-batch sizes dividing `batch`, largest first; no recompute before block
// recompute) with its predicted peak. `chosen` is the index of the plan the trainer would use:
// the first that fits, or -1 when none does. Candidates honour microBatch/recompute fixed in cfg.
struct MemoryPlanning {
  std::vector<MemoryPlan> candidates;
  int chosen = -1;
};
MemoryPlanning planMemory(const TrainConfig& cfg, const Backend& backend);

// What one rank all-reduces per optimizer step in data-parallel training (docs/distributed.md):
// the fp gradients (float), the step's loss/tokens/failure flag and the Ghost Scale gradients
// (double) and the step's vote changes (int8 while worldSize * K <= 127, else int32), K the
// rank's micro-batch chunks per step. Bytes of the buffers summed; a ring all-reduce sends and
// receives about 2 (R-1)/R times this per rank.
struct WireBytes {
  size_t grads = 0, scalars = 0, votes = 0, total = 0;
  bool int32Votes = false;
};
WireBytes wireBytesPerStep(const TrainConfig& cfg, int worldSize);

class Communicator;
struct Model;  // the transformer itself (weights, buffers, passes); internal to the core

struct LayerInfo {
  std::string name;        // "blocks.3.mlp.up"
  int rows = 0, cols = 0;  // out, in
};

class Trainer {
 public:
  // backend: "cpu" or "cuda" (device index 0). threads: CPU threads (0 = all).
  Trainer(const TrainConfig& cfg, const std::string& backend, int threads = 0);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // The config as resolved: microBatch and recompute hold the plan actually in use.
  const TrainConfig& config() const { return cfg_; }
  // Micro-batch chunks per optimizer step: accum * batch / microBatch.
  int chunksPerStep() const { return cfg_.accum * (cfg_.batch / cfg_.microBatch); }
  // The plan's predicted peak (bytes), for comparison with the measured peakBytes.
  size_t plannedBytes() const { return plannedBytes_; }
  const Knobs& knobs() const { return cfg_.knobs; }
  void setKnobs(const Knobs& k);  // validates; bridge changes apply to the next forward
  int step() const { return step_; }
  double tokensSeen() const { return tokens_; }
  std::string deviceName() const;
  Backend& backend() { return *be_; }

  // Data-parallel training (docs/distributed.md): this trainer becomes rank c->rank() of
  // c->worldSize(). Every rank must be built from the same config and seed and given the same
  // training data; rank r then reads windows r*B*K .. (r+1)*B*K-1 of each step (B = batch, K =
  // accum), and applyStep() sums gradients, Ghost Scale gradients and vote changes over the ranks
  // before the identical update, so R ranks equal one rank with accum R*K. Set before the first
  // step (or between steps); nullptr detaches.
  void setCommunicator(std::shared_ptr<Communicator> c);
  Communicator* communicator() const { return comm_.get(); }
  int worldSize() const;
  int rank() const;
  // Every rank takes rank `root`'s whole training state (weights, moments, codes, votes, Ghost
  // Scales, knobs, step and token count): a resume loads the checkpoint on one rank and
  // broadcasts it. Collective: every rank must call it.
  void broadcastState(int root);

  // Training data: token ids < vocab; at least seq+1 tokens.
  void setTrainData(std::vector<int32_t> tokens);
  size_t trainTokens() const { return train_.size(); }

  // One optimizer step: K micro-batch chunks of forward+backward, then the update. Throws Error
  // with the state unchanged (votes of the refused step undone, gradients dropped, no tokens
  // counted) when the loss, the gradient norm or a Ghost Scale gradient is not finite. The host
  // waits for the device once per step: the step uploads its windows at the start, decides and
  // updates on the device, and reads the step's statistics back at the end.
  StepResult trainStep();

  // The two halves of a step, for inspection and tests: accumulate() runs the step's next
  // micro-batch chunk (the next microBatch windows) and returns its loss (reading it back: a host
  // round trip per chunk that trainStep() does not make); applyStep() applies the update once
  // all K = chunksPerStep() chunks are accumulated (either throws otherwise).
  float accumulate();
  StepResult applyStep();

  // Forward-only loss over windows [start, start+len) of `tokens` (len <= seq+1 each); returns
  // sum of nats over scored targets and their count. Batches windows B at a time.
  struct EvalResult {
    double lossSum = 0;
    double count = 0;
  };
  EvalResult evaluate(const int32_t* tokens, size_t n, int window, std::atomic<bool>* cancel = nullptr);
  // Loss of one explicit batch (inputs/targets [B*T], targets < 0 unscored), forward only.
  double batchLoss(const int32_t* inputs, const int32_t* targets, int B, int T);

  // Text generation (the salad test): continues `prompt` by n tokens. temperature <= 0 or
  // topK == 1: greedy. Uses its own Philox key (seed) and never touches the training streams.
  std::vector<int32_t> generate(const std::vector<int32_t>& prompt, int n, float temperature, int topK,
                                uint64_t seed);

  // Introspection.
  const std::vector<LayerInfo>& layers() const { return layerInfo_; }
  int layerIndex(const std::string& name) const;  // throws Error listing valid names
  std::vector<int8_t> codes(int layer);
  std::vector<int8_t> votes(int layer);
  std::vector<float> flipProbabilities(int layer);         // p with the current votes and knobs
  std::vector<float> weights(int layer);                   // effective weights as used in forward
  void setCodes(int layer, const std::vector<int8_t>& c);  // validated (-2..2)
  void setVotes(int layer, const std::vector<int8_t>& v);  // validated (-127..127)
  std::vector<float> scales() const;      // Ghost Scales s (poltergeist), gamma (ste), rms (fp)
  std::vector<float> scaleGrads() const;  // accumulated dL/ds since the last step
  void setScale(int layer, float s);
  std::vector<float> gamma0() const;
  std::vector<LayerStep> layerStats();  // current occupancy/votes/p without stepping
  MemoryReport memory() const;
  size_t paramCount() const;  // model parameters (tied embedding counted once)

  // Whole-state checkpoint as safetensors (docs/design.md, "On disk"). `extraMeta` is stored as a JSON string
  // under "__metadata__"."primal.extra". load() validates everything before touching state.
  void save(const std::string& path, const std::string& extraMeta = "{}");
  // otherActBits: accept a checkpoint trained with another actBits (to evaluate it with or without
  // activation quantization); every other field that changes the model or its data must match.
  std::string load(const std::string& path, bool otherActBits = false);  // returns extraMeta

  // Debug/testing access to fp parameters by name ("wte", "blocks.0.attn_norm", "blocks.0.attn.q"
  // (latent W for fp/ste), "norm_f") and their gradients.
  std::vector<std::string> paramNames() const;
  std::vector<float> param(const std::string& name);
  void setParam(const std::string& name, const std::vector<float>& v);
  std::vector<float> paramGrad(const std::string& name);
  // Forward+backward of an explicit batch (targets < 0 unscored) instead of the data windows: adds
  // the gradient of this batch's mean loss (scale 1/scored targets) and its votes, counts toward
  // the step's loss and tokens, and refuses a non-finite loss like accumulate(). A step built from
  // n such calls is applied by applyStep() with K = n. Returns the mean loss.
  double forwardBackward(const int32_t* inputs, const int32_t* targets, int B, int T);
  void zeroGrad();

  // Next-token logits [T, vocab] at every position of one window of T <= seq tokens (forward
  // only, as batchLoss computes it): what an exported model is compared against.
  std::vector<float> logits(const int32_t* tokens, int T);

 private:
  friend struct TrainerTestAccess;  // the core's tests reach the model's buffers
  TrainConfig cfg_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<Model> m_;
  std::vector<LayerInfo> layerInfo_;
  std::vector<int32_t> train_;
  int step_ = 0;
  int accumulated_ = 0;
  bool explicitStep_ = false;  // this step's chunks came from forwardBackward()
  // One micro-batch chunk (its tokens on the device): forward, loss and backward; `inspect` reads
  // its loss back (accumulate, forwardBackward) and refuses a non-finite one at once.
  double chunkForwardBackward(int chunk, int B, int T, float gradScale, bool inspect);
  void uploadChunks(int first, int count);  // this step's windows of those chunks, in one upload
  float chunkGradScale() const;
  std::string refusalMessage(const StepHead& h, double badDs) const;
  double dsOf(int layer) const;                  // the accumulated dL/ds of a layer (a host read)
  float layerScale(double sum, size_t n) const;  // fp rms / ste gamma from a layer's weight sum
  std::vector<uint8_t> report_;                  // host copy of the step's report
  std::shared_ptr<Communicator> comm_;
  bool consistencyChecked_ = false;
  uint32_t digest_ = 0;  // distributed: 20 bits of the last step's result, compared across ranks
  void checkRanksAgree();
  // All-reduce / broadcast of backend memory (device = true) or host memory, staged through the
  // memory the communicator works on when that differs. type: a CommType.
  void reduce(void* buf, size_t count, int type, bool device);
  void bcast(void* buf, size_t bytes, int root, bool device);
  bool reduceStep();  // true when it merged the votes itself (int32 path)
  [[noreturn]] void failStep(const std::string& why);
  size_t plannedBytes_ = 0;
  double tokens_ = 0;
};

std::unique_ptr<Backend> makeBackend(const std::string& name, int threads);
std::string coreVersion();

}  // namespace primal
