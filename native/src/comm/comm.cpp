// The communicator factory and what every implementation shares.
#include "primal/comm.h"

#include "primal/error.h"

namespace primal {

#ifdef PRIMAL_HAVE_MPI
std::unique_ptr<Communicator> makeMpiCommunicator();
#endif
#ifdef PRIMAL_HAVE_NCCL
std::unique_ptr<Communicator> makeNcclCommunicator(int cudaDevice);
#endif

size_t commTypeBytes(CommType t) {
  switch (t) {
    case CommType::Int8:
      return 1;
    case CommType::Int32:
      return 4;
    case CommType::Float:
      return 4;
    case CommType::Double:
      return 8;
  }
  return 0;
}

std::string Communicator::where(const std::string& what) const {
  return backend() + " rank " + std::to_string(rank()) + " of " + std::to_string(worldSize()) + ": " + what;
}

std::string communicatorsBuilt() {
  std::string s;
#ifdef PRIMAL_HAVE_MPI
  s += "mpi";
#endif
#ifdef PRIMAL_HAVE_NCCL
  s += s.empty() ? "nccl" : ",nccl";
#endif
  return s;
}

std::unique_ptr<Communicator> makeCommunicator(const std::string& backend, int cudaDevice) {
  if (backend == "mpi") {
#ifdef PRIMAL_HAVE_MPI
    return makeMpiCommunicator();
#else
    (void)cudaDevice;
    throw Error(
        "distributed 'mpi': this build of the PRIMAL native core has no MPI. Install an MPI "
        "implementation with its headers (Debian: apt-get install libopenmpi-dev openmpi-bin) "
        "and rebuild (npx cmake-js compile --out build)");
#endif
  }
  if (backend == "nccl") {
#ifdef PRIMAL_HAVE_NCCL
    return makeNcclCommunicator(cudaDevice);
#else
    throw Error(
        "distributed 'nccl': this build of the PRIMAL native core has no NCCL. It needs the "
        "CUDA backend and NCCL's headers and library (libnccl-dev) found by CMake at build time");
#endif
  }
  throw Error("distributed: unknown backend '" + backend + "' (expected 'mpi' or 'nccl')");
}

}  // namespace primal
