// kvrun — libFuzzer entry point of one target; KVRUN_FUZZ_TARGET names it (fuzz/meson.build).
#include <cstddef>
#include <cstdint>

#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvrun::fuzz::KVRUN_FUZZ_TARGET(data, size);
  return 0;
}
