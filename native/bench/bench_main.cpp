// Training throughput of the core alone (no Node): tokens/s, MFU and peak device memory for a
// preset and quantizer on random tokens. Prints one JSON line; used by test/bench/gpu.
//   primal_bench --device cuda --preset ghost-0.1b --quant poltergeist --batch 8 --steps 20
// Memory plan: --micro-batch M, --recompute none|block|auto, --memory-budget-gib G.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "primal/error.h"
#include "primal/philox.h"
#include "primal/trainer.h"

using namespace primal;

static ModelConfig preset(const std::string& p) {
  ModelConfig m;
  if (p == "tiny") { m.vocab = 256; m.dModel = 64; m.layers = 2; m.heads = 4; m.ffn = 192; m.seq = 64; }
  else if (p == "small") { m.vocab = 256; m.dModel = 256; m.layers = 4; m.heads = 4; m.ffn = 704; m.seq = 128; }
  else if (p == "ghost-0.1b") { m.vocab = 50257; m.dModel = 768; m.layers = 12; m.heads = 12; m.ffn = 2048; m.seq = 1024; }
  else throw Error("unknown preset '" + p + "' (tiny, small, ghost-0.1b)");
  return m;
}

int main(int argc, char** argv) {
  std::string device = "cpu", presetName = "small", quant = "poltergeist";
  int batch = 0, steps = 10, warmup = 2, threads = 0, accum = 1, micro = 0;
  std::string recompute = "auto";
  double budgetGib = 0;
  double peakTflops = 989.0;  // H100 SXM dense bf16; pass the card's number for other GPUs
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--device") device = v;
    else if (k == "--preset") presetName = v;
    else if (k == "--quant") quant = v;
    else if (k == "--batch") batch = std::atoi(v.c_str());
    else if (k == "--accum") accum = std::atoi(v.c_str());
    else if (k == "--steps") steps = std::atoi(v.c_str());
    else if (k == "--warmup") warmup = std::atoi(v.c_str());
    else if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--peak-tflops") peakTflops = std::atof(v.c_str());
    else if (k == "--micro-batch") micro = std::atoi(v.c_str());
    else if (k == "--recompute") recompute = v;
    else if (k == "--memory-budget-gib") budgetGib = std::atof(v.c_str());
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    TrainConfig c;
    c.model = preset(presetName);
    c.quant = parseQuant(quant);
    c.actBits = c.quant == Quant::FP ? 0 : 8;
    c.batch = batch > 0 ? batch : (presetName == "ghost-0.1b" ? 8 : 16);
    c.accum = accum;
    c.microBatch = micro;
    c.recompute = parseRecompute(recompute);
    c.memoryBudget = static_cast<uint64_t>(budgetGib * 1073741824.0);
    c.totalSteps = steps + warmup;
    c.warmup = 1;
    Trainer t(c, device, threads);
    std::vector<int32_t> data(1 << 22);
    for (size_t i = 0; i < data.size(); ++i)
      data[i] = static_cast<int32_t>(philox4x32_10(static_cast<uint32_t>(i), 0, 0, 7, 3, 4).v[0] % c.model.vocab);
    t.setTrainData(std::move(data));
    float loss = 0;
    for (int i = 0; i < warmup; ++i) loss = t.trainStep().loss;
    t.backend().sync();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) loss = t.trainStep().loss;
    t.backend().sync();
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tokens = static_cast<double>(steps) * c.batch * c.accum * c.model.seq;
    const double tps = tokens / sec;
    // 6N per token for the matmuls (tied head counted once as a matmul) + causal attention.
    const ModelConfig& m = c.model;
    const double n = static_cast<double>(m.layers) * (4.0 * m.dModel * m.dModel + 3.0 * m.dModel * m.ffn) +
                     static_cast<double>(m.vocab) * m.dModel;
    const double flopsPerToken = 6.0 * n + 6.0 * m.layers * m.seq * m.dModel;
    MemoryReport mem = t.memory();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const size_t rss = static_cast<size_t>(ru.ru_maxrss) * 1024;
    std::printf(
        "{\"engine\":\"primal\",\"device\":\"%s\",\"preset\":\"%s\",\"quant\":\"%s\",\"batch\":%d,\"accum\":%d,"
        "\"microBatch\":%d,\"recompute\":\"%s\",\"plannedBytes\":%zu,\"seq\":%d,\"steps\":%d,\"tokensPerSec\":%.1f,\"stepMs\":%.3f,\"mfu\":%.4f,\"flopsPerToken\":%.4g,"
        "\"peakMemoryBytes\":%zu,\"ternaryStateBytes\":%zu,\"ternaryWeights\":%zu,\"activationBytes\":%zu,"
        "\"peakRssBytes\":%zu,\"memory\":{\"params\":%zu,\"optimizer\":%zu,\"grads\":%zu,\"ternaryState\":%zu,"
        "\"activations\":%zu,\"scratch\":%zu},\"paramCount\":%zu,\"finalLoss\":%.4f}\n",
        t.deviceName().c_str(), presetName.c_str(), quant.c_str(), c.batch, c.accum,
        t.config().microBatch, recomputeName(t.config().recompute), t.plannedBytes(), m.seq, steps, tps,
        1000.0 * sec / steps, tps * flopsPerToken / (peakTflops * 1e12), flopsPerToken, mem.devicePeak,
        mem.ternaryState, mem.ternaryWeights, mem.activations, rss, mem.params, mem.optimizer, mem.grads,
        mem.ternaryState, mem.activations, mem.scratch, t.paramCount(), loss);
    return 0;
  } catch (const std::exception& e) {
    std::printf("{\"engine\":\"primal\",\"error\":\"%s\"}\n", e.what());
    return 1;
  }
}
