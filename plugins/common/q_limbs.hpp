// The paged decode kernel (paged_decode.cu) — query values as three int8 limbs for the int8 decode's dp4a dot products
// (host and device: the CUDA kernel builds them, the CPU tests check the arithmetic).
//
// With a power-of-two scale qs per group of values (the kernel: a lane's 16; qs = 2^(e − 6) for the
// group's max |q| < 2^e, so |q/qs| < 64):
//   t = q/qs,  l0 = rint(t),  l1 = rint((t − l0)·128),  l2 = rint(((t − l0)·128 − l1)·128),
// every step exact in fp32, |l| ≤ 64, and q = qs·(l0 + l1/128 + l2/128²) to within qs·2^-15.
// Σ q·(k − z) over u8 codes k is then qs·(Σ l0·k + Σ l1·k/128 + Σ l2·k/128²) − z·Σ q, the Σ l·k
// exact in int32 (dp4a), the zero point applied through the exact fp32 sum of q.
#pragma once

#include <math.h>

#include "kvrun/dtype.hpp"  // KVRUN_HD

namespace kvrun::paged_decode {

// The exponent e with mx < 2^e (0 for mx = 0 or not finite): the group's limb scale is 2^(e − 6).
KVRUN_HD int q_limb_exponent(float mx) {
  int e = 0;
  if (mx > 0.f && mx <= 3.40282347e38f) (void)frexpf(mx, &e);  // (NaN fails both tests)
  return e;
}

// The three limbs of t = q/qs (|t| < 64).
KVRUN_HD void q_limb_split(float t, int (&l)[3]) {
  const float l0 = rintf(t);
  const float r1 = (t - l0) * 128.f;
  const float l1 = rintf(r1);
  const float l2 = rintf((r1 - l1) * 128.f);
  l[0] = int(l0);
  l[1] = int(l1);
  l[2] = int(l2);
}

}  // namespace kvrun::paged_decode
