// Entry points of the CUDA backend for the core's device dispatcher (src/core/devices.cpp).
// Plain C++: includable by translation units that are not compiled by nvcc.
#pragma once
#include <memory>

#include "primal/backend.h"

namespace primal {

// Creates the CUDA backend on device `deviceIndex` (0-based). Throws primal::Error when the
// device cannot be used (bad index, driver missing, cuBLASLt init failure).
std::unique_ptr<Backend> makeCudaBackendImpl(int deviceIndex);

// Number of visible CUDA devices; 0 when the driver is missing or reports none (never throws).
int cudaDeviceCountImpl();

}  // namespace primal
