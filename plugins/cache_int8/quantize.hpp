// cache.int8 — the exact per-row quantization of SPECS.md §1, shared by the CPU code and the CUDA
// kernel so both produce identical codes and scales. Compile without fast-math and with
// -ffp-contract=off (the meson file does): IEEE fp32 division, round half to even.
#pragma once

#include <cmath>
#include <cstdint>

#include "kvrun/dtype.hpp"

namespace kvrun::int8kv {

KVRUN_HD float clamp255(float v) { return v < 0.f ? 0.f : (v > 255.f ? 255.f : v); }

// x: [n] fp32 values of one (token, KV head); writes q[n], *scale (fp16 bits), *zero.
KVRUN_HD void quantize_row(const float* x, int n, uint8_t* q, uint16_t* scale, uint8_t* zero) {
  float lo = 0.f, hi = 0.f;  // the range always holds 0
  for (int i = 0; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  const uint16_t s_bits0 = f32_to_f16((hi - lo) / 255.f);
  float s = f16_to_f32(s_bits0);
  uint16_t s_bits = s_bits0;
  if (s == 0.f) {
    s = 1.f;
    s_bits = 0x3c00;  // 1.0 in fp16
  }
  const float z = clamp255(rintf(-lo / s));
  for (int i = 0; i < n; ++i) q[i] = uint8_t(clamp255(rintf(x[i] / s) + z));
  *scale = s_bits;
  *zero = uint8_t(z);
}

KVRUN_HD float dequantize(uint8_t q, float scale, uint8_t zero) { return scale * (float(q) - float(zero)); }

}  // namespace kvrun::int8kv
