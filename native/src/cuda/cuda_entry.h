// Entry points of the CUDA backend for the core's device dispatcher (src/core/devices.cpp).
// Plain C++: includable by translation units that are not compiled by nvcc.
#pragma once
#include <memory>
#include <string>

#include "primal/backend.h"

namespace primal {

class OpClock;

// Creates the CUDA backend on device `deviceIndex` (0-based). Throws primal::Error when the
// device cannot be used (bad index, driver missing, cuBLASLt init failure).
std::unique_ptr<Backend> makeCudaBackendImpl(int deviceIndex);

// The same with an explicit GEMM mode: "fp32", "tf32" or "bf16" (then PRIMAL_GEMM / PRIMAL_TF32
// are ignored), or "" for the environment as makeCudaBackendImpl. tf32 and bf16 fall back to fp32
// before sm_80 (describe() says so for bf16). Throws primal::Error for another mode name.
std::unique_ptr<Backend> makeCudaBackendWithGemm(int deviceIndex, const std::string& gemmMode);

// Timing events on the stream of a backend made by makeCudaBackendImpl (op profiler, see
// primal/op_profile.h): a pool of `slots` events created now. nullptr for another backend.
std::unique_ptr<OpClock> makeCudaOpClock(Backend& be, size_t slots);

// Number of visible CUDA devices; 0 when the driver is missing or reports none (never throws).
int cudaDeviceCountImpl();

}  // namespace primal
