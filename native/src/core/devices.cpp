// Backend selection: "cpu", "cuda", or "auto" (CUDA when built and a GPU is present).
#include "primal/backend.h"
#include "primal/error.h"
#include "primal/op_profile.h"
#include "primal/trainer.h"

#ifdef PRIMAL_HAVE_CUDA
#include "../cuda/cuda_entry.h"
#endif

namespace primal {

bool cudaBuilt() {
#ifdef PRIMAL_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

int cudaDeviceCount() {
#ifdef PRIMAL_HAVE_CUDA
  return cudaDeviceCountImpl();
#else
  return 0;
#endif
}

std::unique_ptr<Backend> makeCudaBackend(int deviceIndex) {
#ifdef PRIMAL_HAVE_CUDA
  int n = cudaDeviceCountImpl();
  if (n <= 0)
    throw Error(
        "device 'cuda' requested, but no CUDA GPU is visible (check the driver and "
        "CUDA_VISIBLE_DEVICES); use device 'cpu'");
  if (deviceIndex < 0 || deviceIndex >= n)
    throw Error("CUDA device index " + std::to_string(deviceIndex) + " out of range (" + std::to_string(n) +
                " devices)");
  return makeCudaBackendImpl(deviceIndex);
#else
  (void)deviceIndex;
  throw Error(
      "device 'cuda' requested, but this build of primal has no CUDA backend (it is built "
      "when CMake finds the CUDA toolkit with cuBLAS at install time); use device 'cpu'");
#endif
}

// Wrapped in the op profiler when PRIMAL_PROFILE / PRIMAL_CUDA_PROFILE ask for it (op_profile.h).
std::unique_ptr<Backend> makeBackend(const std::string& name, int threads) {
  if (name == "cpu") return maybeProfile(makeCpuBackend(threads));
  if (name == "cuda") return maybeProfile(makeCudaBackend(0));
  // "cuda:N": device N (data-parallel ranks pick theirs from the local rank).
  if (name.rfind("cuda:", 0) == 0 && name.size() > 5 &&
      name.find_first_not_of("0123456789", 5) == std::string::npos)
    return maybeProfile(makeCudaBackend(std::stoi(name.substr(5))));
  if (name == "auto")
    return maybeProfile(cudaDeviceCount() > 0 ? makeCudaBackend(0) : makeCpuBackend(threads));
  throw Error("device: unknown device '" + name + "' (allowed: cpu, cuda, auto)");
}

std::string coreVersion() { return "0.1.0"; }

}  // namespace primal
