// The data-parallel path against the plain one, in one process (test/bench/gpu/distributed-check.sh):
// trains the same model twice on random tokens, once alone and once as the only rank of a
// communicator ("nccl" or "mpi"), and checks losses, codes and votes agree bit for bit; then prints
// one JSON line with both step times (the cost of the all-reduce path). Run it as a single rank:
//   mpirun -n 1 primal_dist_check --comm nccl --device cuda --preset ghost-0.1b --steps 10
// (an MPI singleton also works: the binary alone). Exit 0 when they agree, 1 when not, 2 on error.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "primal/comm.h"
#include "bench_common.h"
#include "primal/error.h"
#include "primal/trainer.h"

using namespace primal;

using primal_bench::preset;
using primal_bench::randomTokens;

struct Run {
  std::vector<float> losses;
  std::vector<std::vector<int8_t>> codes, votes;
  double msPerStep = 0;
  int rank = 0, world = 1;
};

static Run train(const TrainConfig& c, const std::string& device, const std::string& comm, int steps) {
  std::shared_ptr<Communicator> cm;
  std::string dev = device;
  if (!comm.empty()) {
    cm = makeCommunicator(comm);
    if (cm->deviceMemory() && dev == "cuda") dev = "cuda:" + std::to_string(cm->localRank());
  }
  Trainer t(c, dev, 0);
  if (cm) t.setCommunicator(cm);
  t.setTrainData(randomTokens(c.model.vocab));
  Run r;
  r.rank = t.rank();
  r.world = t.worldSize();
  r.losses.push_back(t.trainStep().loss);  // warm-up step, not timed
  t.backend().sync();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 1; i < steps; ++i) r.losses.push_back(t.trainStep().loss);
  t.backend().sync();
  r.msPerStep = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
                std::max(1, steps - 1);
  for (size_t l = 0; l < t.layers().size(); ++l) {
    r.codes.push_back(t.codes(static_cast<int>(l)));
    r.votes.push_back(t.votes(static_cast<int>(l)));
  }
  return r;
}

int main(int argc, char** argv) {
  std::string device = "cuda", presetName = "ghost-0.1b", comm = "nccl";
  int steps = 10, batch = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--device") device = v;
    else if (k == "--preset") presetName = v;
    else if (k == "--comm") comm = v;
    else if (k == "--steps") steps = std::stoi(v);
    else if (k == "--batch") batch = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    TrainConfig c;
    c.model = preset(presetName);
    c.batch = batch;
    c.totalSteps = steps;
    c.warmup = 1;
    c.knobs.flipRate = 0.05f;
    const Run plain = train(c, device, "", steps);
    const Run dist = train(c, device, comm, steps);
    const bool lossesEqual = plain.losses == dist.losses;
    const bool codesEqual = plain.codes == dist.codes;
    const bool votesEqual = plain.votes == dist.votes;
    const bool ok = lossesEqual && codesEqual && votesEqual;
    if (dist.rank == 0)
      std::printf(
          "{\"check\":\"distributed\",\"comm\":\"%s\",\"worldSize\":%d,\"device\":\"%s\",\"preset\":\"%s\","
          "\"batch\":%d,"
          "\"steps\":%d,\"plainMsPerStep\":%.3f,\"distMsPerStep\":%.3f,\"overheadMs\":%.3f,\"lossesEqual\":%"
          "s,"
          "\"codesEqual\":%s,\"votesEqual\":%s,\"lastLoss\":%.6f}\n",
          comm.c_str(), dist.world, device.c_str(), presetName.c_str(), batch, steps, plain.msPerStep,
          dist.msPerStep, dist.msPerStep - plain.msPerStep, lossesEqual ? "true" : "false",
          codesEqual ? "true" : "false", votesEqual ? "true" : "false", dist.losses.back());
    return dist.world == 1 ? (ok ? 0 : 1) : 0;  // with more ranks the runs differ by design
  } catch (const std::exception& e) {
    std::fprintf(stderr, "primal_dist_check: %s\n", e.what());
    return 2;
  }
}
