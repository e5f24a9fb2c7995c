// The NCCL communicator (built when CMake finds NCCL next to the CUDA backend and MPI:
// PRIMAL_HAVE_NCCL). Ranks are MPI's: MPI starts the processes (mpirun, srun), picks this
// process's GPU from its local rank and carries NCCL's unique id from rank 0 to the others; the
// collectives themselves run over NCCL (NVLink, InfiniBand) on CUDA device memory of the CUDA
// backend, on the communicator's own stream. The trainer syncs its backend stream before a
// collective; every call here returns once its result is in memory.
#ifdef PRIMAL_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "poll_backoff.h"
#include "primal/comm.h"
#include "primal/error.h"

namespace primal {

std::unique_ptr<Communicator> makeMpiCommunicator();

namespace {

ncclDataType_t ncclType(CommType t) {
  switch (t) {
    case CommType::Int8:
      return ncclInt8;
    case CommType::Int32:
      return ncclInt32;
    case CommType::Float:
      return ncclFloat32;
    case CommType::Double:
      return ncclFloat64;
  }
  return ncclInt8;
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(int cudaDevice) : boot_(makeMpiCommunicator()) {
    device_ = cudaDevice >= 0 ? cudaDevice : boot_->localRank();
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
      throw Error(where("no CUDA device is visible to this process"));
    if (device_ >= count)
      throw Error(where("local rank " + std::to_string(boot_->localRank()) + " needs GPU " +
                        std::to_string(device_) + " but this host shows " + std::to_string(count) +
                        " GPU(s): start at most one rank per GPU"));
    cudaCheck(cudaSetDevice(device_), "cudaSetDevice");
    ncclUniqueId id;
    if (boot_->rank() == 0) ncclCheck(ncclGetUniqueId(&id), "ncclGetUniqueId");
    boot_->broadcast(&id, sizeof(id), 0);
    ncclCheck(ncclCommInitRank(&comm_, boot_->worldSize(), id, boot_->rank()), "ncclCommInitRank");
    cudaCheck(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }

  ~NcclCommunicator() override {
    if (stream_) (void)cudaStreamDestroy(stream_);
    if (comm_) (void)ncclCommDestroy(comm_);
  }

  std::string backend() const override { return "nccl"; }
  int rank() const override { return boot_->rank(); }
  int worldSize() const override { return boot_->worldSize(); }
  int localRank() const override { return boot_->localRank(); }
  bool deviceMemory() const override { return true; }

  void allReduceSum(void* buf, size_t count, CommType type) override {
    live("allReduceSum");
    ncclCheck(ncclAllReduce(buf, buf, count, ncclType(type), ncclSum, comm_, stream_), "ncclAllReduce");
    wait("ncclAllReduce");
  }

  void allReduceSumMany(const std::vector<CommBuffer>& bufs) override {
    live("allReduceSumMany");
    ncclCheck(ncclGroupStart(), "ncclGroupStart");
    for (const CommBuffer& b : bufs) {
      const ncclResult_t rc =
          ncclAllReduce(b.data, b.data, b.count, ncclType(b.type), ncclSum, comm_, stream_);
      if (rc != ncclSuccess) {
        (void)ncclGroupEnd();
        ncclCheck(rc, "ncclAllReduce");
      }
    }
    ncclCheck(ncclGroupEnd(), "ncclGroupEnd");
    wait("ncclAllReduce (group)");
  }

  void broadcast(void* buf, size_t bytes, int root) override {
    if (root < 0 || root >= worldSize())
      throw Error(where("broadcast root " + std::to_string(root) + " out of range"));
    live("broadcast");
    ncclCheck(ncclBroadcast(buf, buf, bytes, ncclInt8, root, comm_, stream_), "ncclBroadcast");
    wait("ncclBroadcast");
  }

  void barrier() override {
    // A one-element all-reduce orders every rank; MPI's barrier would not order the GPU streams.
    int32_t* one = nullptr;
    cudaCheck(cudaMalloc(&one, sizeof(int32_t)), "cudaMalloc");
    (void)cudaMemsetAsync(one, 0, sizeof(int32_t), stream_);
    try {
      allReduceSum(one, 1, CommType::Int32);
    } catch (...) {
      (void)cudaFree(one);
      throw;
    }
    (void)cudaFree(one);
  }

 private:
  std::unique_ptr<Communicator> boot_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;

  // Waits for the stream, polling NCCL's asynchronous error so a lost peer fails the call instead
  // of hanging it; backs off between polls (poll_backoff.h) so a long collective does not keep a
  // core busy per rank.
  void wait(const char* what) {
    PollBackoff backoff;
    for (;;) {
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) cudaCheck(q, what);
      ncclResult_t async = ncclSuccess;
      ncclCheck(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
      if (async != ncclSuccess) {
        (void)ncclCommAbort(comm_);
        comm_ = nullptr;
        throw Error(where(std::string(what) + " failed: " + ncclGetErrorString(async) +
                          " (a peer rank failed or left; the communicator is aborted)"));
      }
      backoff.pause();
    }
  }

  void live(const char* what) const {
    if (!comm_)
      throw Error(where(std::string(what) + ": the communicator was aborted after an earlier failure"));
  }
  void ncclCheck(ncclResult_t rc, const char* what) const {
    if (rc != ncclSuccess) throw Error(where(std::string(what) + " failed: " + ncclGetErrorString(rc)));
  }
  void cudaCheck(cudaError_t rc, const char* what) const {
    if (rc != cudaSuccess) throw Error(where(std::string(what) + " failed: " + cudaGetErrorString(rc)));
  }
};

}  // namespace

std::unique_ptr<Communicator> makeNcclCommunicator(int cudaDevice) {
  return std::make_unique<NcclCommunicator>(cudaDevice);
}

}  // namespace primal
#endif  // PRIMAL_HAVE_NCCL
