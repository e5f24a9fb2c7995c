// Collective communication for data-parallel training (docs/distributed.md): a communicator
// joins R ranks that each hold a full model replica. The trainer calls it once per step, after
// backward, to sum the fp gradients, the Ghost Scale gradients and the per-step vote changes.
//
// Implementations: MPI (native/src/comm/mpi_comm.cpp, built when CMake finds MPI:
// PRIMAL_HAVE_MPI) works on host memory; NCCL (nccl_comm.cpp, built when CMake finds NCCL and
// the CUDA backend: PRIMAL_HAVE_NCCL) works on CUDA device memory of the CUDA backend. Every
// failure throws primal::Error naming the backend and this process's rank.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace primal {

enum class CommType { Int8, Int32, Float, Double };
size_t commTypeBytes(CommType t);

// One buffer of a batched all-reduce.
struct CommBuffer {
  void* data;
  size_t count;
  CommType type;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string backend() const = 0;  // "mpi" or "nccl"
  virtual int rank() const = 0;
  virtual int worldSize() const = 0;
  // Rank among the processes of this host (chooses the GPU for NCCL).
  virtual int localRank() const = 0;
  // True when buffers are device memory of the CUDA backend (NCCL); false: host memory (MPI).
  virtual bool deviceMemory() const = 0;

  // In-place element-wise sum over all ranks of `count` elements of `type`. int8 sums wrap on
  // overflow like the hardware does: callers choose int8 only when the sum provably fits.
  virtual void allReduceSum(void* buf, size_t count, CommType type) = 0;
  // Several all-reduces in one go (NCCL: one group launch; MPI: non-blocking, then one wait), so a
  // step pays the collective latency about once instead of once per buffer. Same sums as calling
  // allReduceSum on each.
  virtual void allReduceSumMany(const std::vector<CommBuffer>& bufs) = 0;
  // Rank `root`'s bytes to every rank.
  virtual void broadcast(void* buf, size_t bytes, int root) = 0;
  virtual void barrier() = 0;

 protected:
  // "mpi rank 1 of 2: <what>" for every error message.
  std::string where(const std::string& what) const;
};

// "mpi" or "nccl". NCCL needs the CUDA backend (cudaDevice: the device index the trainer uses;
// -1 = the local rank). Throws Error naming what is missing when this build lacks the backend.
std::unique_ptr<Communicator> makeCommunicator(const std::string& backend, int cudaDevice = -1);
// The communicators this build has: "mpi", "nccl" (possibly none).
std::string communicatorsBuilt();

}  // namespace primal
