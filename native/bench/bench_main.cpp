// Training throughput of the core alone (no Node): tokens/s, MFU and peak device memory for a
// preset and quantizer on random tokens. Prints one JSON line; used by test/bench/gpu.
//   primal_bench --device cuda --preset ghost-0.1b --quant poltergeist --batch 8 --steps 20
// Memory plan: --micro-batch M, --recompute none|block|auto, --memory-budget-gib G.
// --env NAME=VALUE sets a variable before the backend is made (PRIMAL_GEMM, PRIMAL_CUDA_ATTN, ...).
// --configs FILE runs every line of FILE (the same options; '#' starts a comment) in this one
// process, one JSON line each, so a GPU context is created once for many rows.
// With PRIMAL_CUDA_PROFILE=1 (or PRIMAL_PROFILE=1) the row gains "profile": per-op calls, ms,
// % of busy time, us/call, TFLOP/s, GB/s, GPU-busy vs wall ms and host syncs per step; a table
// goes to stderr. Every row names the GEMM and attention modes and the git commit.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "primal/error.h"
#include "primal/op_profile.h"
#include "primal/trainer.h"

using namespace primal;

using primal_bench::preset;
using primal_bench::randomTokens;

#ifdef PRIMAL_HAVE_GIT_COMMIT_H
#include "git_commit.h"  // written at build time (native/cmake/git_commit.cmake)
#endif
#ifndef PRIMAL_GIT_COMMIT
#define PRIMAL_GIT_COMMIT "unknown"
#endif

namespace {

struct Options {
  std::string device = "cpu", presetName = "small", quant = "poltergeist";
  int batch = 0, steps = 10, warmup = 2, threads = 0, accum = 1, micro = 0;
  std::string recompute = "auto";
  double budgetGib = 0;
  double peakTflops = 989.0;  // H100 SXM dense bf16; pass the card's number for other GPUs
  std::vector<std::pair<std::string, std::string>> env;
  std::string label;
};

// Parses "--key value" pairs into o (on top of what it holds). Returns an error or "".
std::string parseArgs(const std::vector<std::string>& a, Options& o, std::string* configs) {
  for (size_t i = 0; i < a.size(); i += 2) {
    const std::string& k = a[i];
    if (i + 1 >= a.size()) return "option " + k + " needs a value";
    const std::string& v = a[i + 1];
    if (k == "--device") o.device = v;
    else if (k == "--preset") o.presetName = v;
    else if (k == "--quant") o.quant = v;
    else if (k == "--batch") o.batch = std::atoi(v.c_str());
    else if (k == "--accum") o.accum = std::atoi(v.c_str());
    else if (k == "--steps") o.steps = std::atoi(v.c_str());
    else if (k == "--warmup") o.warmup = std::atoi(v.c_str());
    else if (k == "--threads") o.threads = std::atoi(v.c_str());
    else if (k == "--peak-tflops") o.peakTflops = std::atof(v.c_str());
    else if (k == "--micro-batch") o.micro = std::atoi(v.c_str());
    else if (k == "--recompute") o.recompute = v;
    else if (k == "--memory-budget-gib") o.budgetGib = std::atof(v.c_str());
    else if (k == "--label") o.label = v;
    else if (k == "--env") {
      const size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0) return "--env needs NAME=VALUE, got '" + v + "'";
      o.env.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (k == "--configs" && configs) *configs = v;
    else return "unknown option " + k;
  }
  return "";
}

std::string jsonEscape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    r += c;
  }
  return r;
}

std::string envOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// The GEMM and attention modes this backend runs (what its describe() and the environment say).
std::string gemmMode(const std::string& device, const std::string& described) {
  if (device != "cuda") return "fp32";
  if (described.find("BF16 GEMM") != std::string::npos) return "bf16";
  if (described.find("TF32") != std::string::npos) return "tf32";
  return "fp32";
}
std::string attentionMode(const std::string& device) {
  if (device != "cuda") return "cpu";
  const std::string a = envOr("PRIMAL_CUDA_ATTN", "");
  return a == "tc" ? "tc" : "simt";
}

void printProfileTable(const OpProfileReport& r, double wallMsPerStep, const std::string& label) {
  const double steps = r.steps ? static_cast<double>(r.steps) : 1.0;
  std::fprintf(stderr, "\n== op profile: %s (%llu steps, %s) ==\n", label.c_str(),
               static_cast<unsigned long long>(r.steps), r.clock.c_str());
  std::fprintf(stderr, "%-20s %9s %10s %7s %10s %9s %9s\n", "op", "calls", "ms/step", "%step", "us/call",
               "TFLOP/s", "GB/s");
  std::vector<OpStat> ops = r.ops;
  std::sort(ops.begin(), ops.end(), [](const OpStat& a, const OpStat& b) { return a.ms > b.ms; });
  for (const OpStat& o : ops) {
    const double sec = o.ms / 1000.0;
    std::fprintf(stderr, "%-20s %9.1f %10.3f %6.1f%% %10.2f %9.2f %9.1f\n", o.name.c_str(),
                 static_cast<double>(o.calls) / steps, o.ms / steps,
                 wallMsPerStep > 0 ? 100.0 * (o.ms / steps) / wallMsPerStep : 0.0,
                 o.calls ? 1000.0 * o.ms / static_cast<double>(o.calls) : 0.0,
                 sec > 0 ? o.flops / sec / 1e12 : 0.0, sec > 0 ? o.bytes / sec / 1e9 : 0.0);
  }
  std::fprintf(stderr,
               "busy %.3f ms/step, span %.3f ms/step, wall %.3f ms/step (busy %.1f%% of wall), "
               "host syncs %.1f/step\n",
               r.busyMs / steps, r.spanMs / steps, wallMsPerStep,
               wallMsPerStep > 0 ? 100.0 * (r.busyMs / steps) / wallMsPerStep : 0.0,
               static_cast<double>(r.hostSyncs) / steps);
}

// Sets a configuration's variables for its run, restoring the previous values after.
class EnvSet {
 public:
  explicit EnvSet(const std::vector<std::pair<std::string, std::string>>& vars) {
    for (const auto& e : vars) {
      const char* old = std::getenv(e.first.c_str());
      old_.push_back({e.first, old ? old : "", old != nullptr});
      setenv(e.first.c_str(), e.second.c_str(), 1);
    }
  }
  ~EnvSet() {
    for (auto it = old_.rbegin(); it != old_.rend(); ++it) {
      if (it->had) setenv(it->name.c_str(), it->value.c_str(), 1);
      else unsetenv(it->name.c_str());
    }
  }

 private:
  struct Old {
    std::string name, value;
    bool had;
  };
  std::vector<Old> old_;
};

// Runs one configuration and prints its JSON row. Returns false when it failed (error row).
bool runOne(const Options& o, const std::string& commit) {
  std::string label = o.label;
  if (label.empty()) {
    label = o.quant;
    for (const auto& e : o.env) label += " " + e.first + "=" + e.second;
  }
  EnvSet envScope(o.env);
  try {
    TrainConfig c;
    c.model = preset(o.presetName);
    c.quant = parseQuant(o.quant);
    c.actBits = c.quant == Quant::FP ? 0 : 8;
    c.batch = o.batch > 0 ? o.batch : (o.presetName == "ghost-0.1b" ? 8 : 16);
    c.accum = o.accum;
    c.microBatch = o.micro;
    c.recompute = parseRecompute(o.recompute);
    c.memoryBudget = static_cast<uint64_t>(o.budgetGib * 1073741824.0);
    c.totalSteps = o.steps + o.warmup;
    c.warmup = 1;
    Trainer t(c, o.device, o.threads);
    t.setTrainData(randomTokens(c.model.vocab));
    ProfilingBackend* prof = profilerOf(t.backend());
    float loss = 0;
    for (int i = 0; i < o.warmup; ++i) loss = t.trainStep().loss;
    t.backend().sync();
    if (prof) prof->resetProfile();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.steps; ++i) {
      loss = t.trainStep().loss;
      // Resolving the step's events waits for the step once; profiled rows time that too.
      if (prof) prof->endStep();
    }
    // The profile of the steps alone: the wait below (for the wall time) is the bench's, not a step's.
    const OpProfileReport profile = prof ? prof->report() : OpProfileReport{};
    const std::string profileJson = prof ? prof->reportJson() : std::string();
    t.backend().sync();
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tokens = static_cast<double>(o.steps) * c.batch * c.accum * c.model.seq;
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
    const std::string described = t.backend().describe();
    std::string envJson;
    for (const auto& e : o.env)
      envJson +=
          (envJson.empty() ? "" : ",") + ("\"" + jsonEscape(e.first) + "\":\"" + jsonEscape(e.second) + "\"");
    std::printf(
        "{\"engine\":\"primal\",\"label\":\"%s\",\"commit\":\"%s\",\"backend\":\"%s\",\"gemm\":\"%s\","
        "\"attention\":\"%s\","
        "\"env\":{%s},\"profiled\":%s,"
        "\"device\":\"%s\",\"preset\":\"%s\",\"quant\":\"%s\",\"batch\":%d,\"accum\":%d,"
        "\"microBatch\":%d,\"recompute\":\"%s\",\"plannedBytes\":%zu,\"seq\":%d,\"steps\":%d,"
        "\"tokensPerSec\":%.1f,\"stepMs\":%.3f,\"mfu\":%.4f,\"flopsPerToken\":%.4g,"
        "\"peakMemoryBytes\":%zu,\"ternaryStateBytes\":%zu,\"ternaryWeights\":%zu,\"activationBytes\":%zu,"
        "\"peakRssBytes\":%zu,\"memory\":{\"params\":%zu,\"optimizer\":%zu,\"grads\":%zu,\"ternaryState\":%"
        "zu,"
        "\"activations\":%zu,\"scratch\":%zu},\"paramCount\":%zu,\"finalLoss\":%.4f",
        jsonEscape(label).c_str(), jsonEscape(commit).c_str(), jsonEscape(described).c_str(),
        gemmMode(o.device, described).c_str(), attentionMode(o.device).c_str(), envJson.c_str(),
        prof ? "true" : "false", t.deviceName().c_str(), o.presetName.c_str(), o.quant.c_str(), c.batch,
        c.accum, t.config().microBatch, recomputeName(t.config().recompute), t.plannedBytes(), m.seq, o.steps,
        tps, 1000.0 * sec / o.steps, tps * flopsPerToken / (o.peakTflops * 1e12), flopsPerToken,
        mem.devicePeak, mem.ternaryState, mem.ternaryWeights, mem.activations, rss, mem.params, mem.optimizer,
        mem.grads, mem.ternaryState, mem.activations, mem.scratch, t.paramCount(), loss);
    if (prof) {
      std::printf(",\"profile\":%s", profileJson.c_str());
      printProfileTable(profile, 1000.0 * sec / o.steps, label);
    }
    std::printf("}\n");
    std::fflush(stdout);
    return true;
  } catch (const std::exception& e) {
    std::printf(
        "{\"engine\":\"primal\",\"label\":\"%s\",\"commit\":\"%s\",\"quant\":\"%s\",\"error\":\"%s\"}\n",
        jsonEscape(label).c_str(), jsonEscape(commit).c_str(), jsonEscape(o.quant).c_str(),
        jsonEscape(e.what()).c_str());
    std::fflush(stdout);
    return false;
  }
}

std::vector<std::string> splitWords(const std::string& line) {
  std::vector<std::string> w;
  std::istringstream is(line);
  std::string x;
  while (is >> x) w.push_back(x);
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  Options base;
  std::string configs;
  const std::string err = parseArgs(std::vector<std::string>(argv + 1, argv + argc), base, &configs);
  if (!err.empty()) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 2;
  }
  // The commit of the sources: PRIMAL_GIT_COMMIT at run time (a tree without .git), else the one
  // CMake saw at configure time.
  const std::string commit = envOr("PRIMAL_GIT_COMMIT", PRIMAL_GIT_COMMIT);
  if (configs.empty()) return runOne(base, commit) ? 0 : 1;
  std::ifstream in(configs);
  if (!in) {
    std::fprintf(stderr, "cannot read --configs file %s\n", configs.c_str());
    return 2;
  }
  int failed = 0;
  std::string line;
  while (std::getline(in, line)) {
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    const std::vector<std::string> words = splitWords(line);
    if (words.empty()) continue;
    Options o = base;
    const std::string e = parseArgs(words, o, nullptr);
    if (!e.empty()) {
      std::printf("{\"engine\":\"primal\",\"commit\":\"%s\",\"error\":\"%s\"}\n", jsonEscape(commit).c_str(),
                  jsonEscape(e + " in: " + line).c_str());
      std::fflush(stdout);
      ++failed;
      continue;
    }
    if (!runOne(o, commit)) ++failed;
  }
  return failed ? 1 : 0;
}
