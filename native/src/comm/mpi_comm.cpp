// The MPI communicator (built when CMake finds MPI). One MPI_COMM_WORLD per process, initialised
// on first use and finalised at exit; every call returns its error code (MPI_ERRORS_RETURN) and
// becomes a primal::Error naming the rank. Buffers are host memory.
#ifdef PRIMAL_HAVE_MPI
// The C API only (Open MPI and MPICH would otherwise pull in their deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "primal/comm.h"
#include "primal/error.h"

namespace primal {

namespace {

std::string mpiMessage(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(len));
}

void finalizeAtExit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

MPI_Datatype mpiType(CommType t) {
  switch (t) {
    case CommType::Int8:
      return MPI_INT8_T;
    case CommType::Int32:
      return MPI_INT32_T;
    case CommType::Float:
      return MPI_FLOAT;
    case CommType::Double:
      return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    static std::once_flag once;
    static std::string initError;
    std::call_once(once, [] {
      int ready = 0;
      MPI_Initialized(&ready);
      if (!ready) {
        // Node loads the addon (and with it libmpi) with RTLD_LOCAL; Open MPI's plugins resolve
        // libmpi's symbols globally, so make them global before MPI_Init.
        Dl_info info;
        if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &info) && info.dli_fname)
          (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
        // Calls come from whichever thread runs the step (never two at once): SERIALIZED.
        int provided = 0;
        const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
        if (rc != MPI_SUCCESS) {
          initError = "MPI_Init_thread failed: " + mpiMessage(rc);
          return;
        }
        std::atexit(finalizeAtExit);
        if (provided < MPI_THREAD_SERIALIZED) {
          initError = "the MPI library provides thread level " + std::to_string(provided) +
                      ", below MPI_THREAD_SERIALIZED";
          return;
        }
      }
      MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    });
    if (!initError.empty()) throw Error("mpi: " + initError);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm local;
    check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
          "MPI_Comm_split_type");
    MPI_Comm_rank(local, &localRank_);
    MPI_Comm_free(&local);
  }

  std::string backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int worldSize() const override { return size_; }
  int localRank() const override { return localRank_; }
  bool deviceMemory() const override { return false; }

  void allReduceSum(void* buf, size_t count, CommType type) override {
    const size_t esz = commTypeBytes(type);
    auto* p = static_cast<char*>(buf);
    // MPI counts are int: large buffers go in pieces.
    for (size_t off = 0; off < count; off += kPiece) {
      const size_t n = std::min(kPiece, count - off);
      check(MPI_Allreduce(MPI_IN_PLACE, p + off * esz, static_cast<int>(n), mpiType(type), MPI_SUM,
                          MPI_COMM_WORLD),
            "MPI_Allreduce");
    }
  }

  void allReduceSumMany(const std::vector<CommBuffer>& bufs) override {
    std::vector<MPI_Request> reqs;
    for (const CommBuffer& b : bufs) {
      auto* p = static_cast<char*>(b.data);
      const size_t esz = commTypeBytes(b.type);
      for (size_t off = 0; off < b.count; off += kPiece) {
        const size_t n = std::min(kPiece, b.count - off);
        reqs.emplace_back();
        const int rc = MPI_Iallreduce(MPI_IN_PLACE, p + off * esz, static_cast<int>(n), mpiType(b.type),
                                      MPI_SUM, MPI_COMM_WORLD, &reqs.back());
        if (rc != MPI_SUCCESS) {
          reqs.pop_back();
          if (!reqs.empty()) MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE);
          check(rc, "MPI_Iallreduce");
        }
      }
    }
    if (!reqs.empty())
      check(MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE),
            "MPI_Waitall (all-reduce)");
  }

  void broadcast(void* buf, size_t bytes, int root) override {
    if (root < 0 || root >= size_)
      throw Error(where("broadcast root " + std::to_string(root) + " out of range"));
    auto* p = static_cast<char*>(buf);
    for (size_t off = 0; off < bytes; off += kPiece) {
      const size_t n = std::min(kPiece, bytes - off);
      check(MPI_Bcast(p + off, static_cast<int>(n), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
    }
  }

  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

 private:
  static constexpr size_t kPiece = static_cast<size_t>(1) << 30;
  int rank_ = 0, size_ = 1, localRank_ = 0;

  void check(int rc, const char* what) const {
    if (rc != MPI_SUCCESS) throw Error(where(std::string(what) + " failed: " + mpiMessage(rc)));
  }
};

}  // namespace

std::unique_ptr<Communicator> makeMpiCommunicator() { return std::make_unique<MpiCommunicator>(); }

}  // namespace primal
#endif  // PRIMAL_HAVE_MPI
