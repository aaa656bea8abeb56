// kvrun — the CPU backend: host memory, the process-wide worker pool, AVX2 kernels.
#pragma once

#include <memory>
#include <string>

#include "kvrun/device.hpp"

namespace kvrun {
class Ops;
}

namespace kvrun::cpu {

// Opens the CPU device and sizes the process-wide worker pool (kvrun/cpu/parallel.hpp) to
// `threads` threads in all (0 = std::thread::hardware_concurrency()). Throws Error(usage) for
// threads < 0. Every CPU device shares the one pool; the latest call decides its size.
std::shared_ptr<Device> make_cpu_device(int threads);

// The CPU implementation of Ops (stateless, shared by every CPU device; also usable by plugins on
// host memory).
Ops& cpu_ops() noexcept;

// "AMD EPYC, x86-64-v3 kernels (AVX2 FMA F16C)" — the processor and what the kernels use.
std::string cpu_description();

}  // namespace kvrun::cpu
