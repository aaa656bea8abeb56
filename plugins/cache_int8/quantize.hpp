// cache.int8 — the exact per-row quantization of SPECS.md §1, shared by the CPU code and the CUDA
// kernel so both produce identical codes and scales. Compile without fast-math and with
// -ffp-contract=off (the meson file does): IEEE fp32 division, round half to even.
#pragma once

#include <cmath>
#include <cstdint>

#include "kvrun/dtype.hpp"

namespace kvrun::int8kv {

KVRUN_HD float clamp255(float v) { return v < 0.f ? 0.f : (v > 255.f ? 255.f : v); }

// The row's parameters from its range [lo, hi] (lo <= 0 <= hi): the fp16 scale (as float s and as
// bits) and the zero point z. A row whose fp16 scale rounds to 0 gets s = 1.
KVRUN_HD void row_params(float lo, float hi, float* s, uint16_t* s_bits, float* z) {
  const uint16_t b = f32_to_f16((hi - lo) / 255.f);
  float sf = f16_to_f32(b);
  uint16_t bits = b;
  if (sf == 0.f) {
    sf = 1.f;
    bits = 0x3c00;  // 1.0 in fp16
  }
  *s = sf;
  *s_bits = bits;
  *z = clamp255(rintf(-lo / sf));
}

// One code: clamp(round_half_even(x / s) + z, 0, 255).
KVRUN_HD uint8_t quantize_value(float x, float s, float z) { return uint8_t(clamp255(rintf(x / s) + z)); }

// Range update of one element (the range starts at [0, 0]; NaN never enters it). Order-independent,
// so a parallel reduction (the CUDA kernel) finds the same lo/hi as this loop.
KVRUN_HD void range_update(float x, float* lo, float* hi) {
  *lo = x < *lo ? x : *lo;
  *hi = x > *hi ? x : *hi;
}

// x: [n] fp32 values of one (token, KV head); writes q[n], *scale (fp16 bits), *zero.
KVRUN_HD void quantize_row(const float* x, int n, uint8_t* q, uint16_t* scale, uint8_t* zero) {
  float lo = 0.f, hi = 0.f;  // the range always holds 0
  for (int i = 0; i < n; ++i) range_update(x[i], &lo, &hi);
  float s, z;
  uint16_t s_bits;
  row_params(lo, hi, &s, &s_bits, &z);
  for (int i = 0; i < n; ++i) q[i] = quantize_value(x[i], s, z);
  *scale = s_bits;
  *zero = uint8_t(z);
}

KVRUN_HD float dequantize(uint8_t q, float scale, uint8_t zero) { return scale * (float(q) - float(zero)); }

}  // namespace kvrun::int8kv
