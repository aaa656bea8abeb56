// kvrun — the dense operations every backend provides (interface; implementations in backends/) (the model's recipe calls only these,
// plus Linear/Cache/Attention from plugins). All activations are f32 in the device's memory.
// Every method is noexcept and returns a Status (the CUDA backend is a runtime-loaded module).
// Weight-like operands (w, table, bias) may be f32, f16 or bf16.
#pragma once

#include <cstdint>

#include "kvrun/error.hpp"
#include "kvrun/tensor.hpp"

namespace kvrun {

// Per-sequence sampling settings for Ops::sample.
struct SampleParams {
  float temperature = 0.f;  // 0 = greedy (argmax)
  int top_k = 0;            // 0 = off
  float top_p = 1.f;        // 1 = off
  float min_p = 0.f;        // 0 = off
  uint64_t seed = 0;
  uint64_t counter = 0;     // draw index within the sequence (tokens generated so far)
};

// What Ops::matmul_fused / Linear::forward_fused do besides y = x·Wᵀ (+ bias), so that the
// decode step needs no separate norm, add or SwiGLU kernel around a projection:
//   norm_w      the product reads rms_norm(x)·norm_w (norm_w: [K], f32/f16/bf16) instead of x;
//               x is the residual stream, left unchanged.
//   swiglu      x is [M, 2K] gate | up (a fused gate·up output); the product reads silu(gate)·up.
//   accumulate  y += x·Wᵀ (+ bias) instead of y = … (the residual add of o and down).
// norm_w and swiglu exclude each other. The result equals the unfused ops' (rms_norm or swiglu
// into a temporary, matmul, add) up to fp32 rounding order; the CPU backend composes exactly those.
struct MatmulFusion {
  const TensorView* norm_w = nullptr;
  float norm_eps = 0.f;
  bool swiglu = false;
  bool accumulate = false;
};

class Ops {
 public:
  virtual ~Ops() = default;

  // y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]). y must not alias x.
  virtual Status matmul(TensorView y, TensorView x, TensorView w, const TensorView* bias) noexcept = 0;
  // y[M,D] = x[M,D] / sqrt(mean(x²) + eps) * w[D]   (fp32 arithmetic; y may alias x)
  virtual Status rms_norm(TensorView y, TensorView x, TensorView w, float eps) noexcept = 0;
  // y = a + b, elementwise over equal shapes (y may alias a or b)
  virtual Status add(TensorView y, TensorView a, TensorView b) noexcept = 0;
  // out[M,F] = silu(gate[M,F]) * up[M,F]   (out may alias gate or up)
  virtual Status silu_mul(TensorView out, TensorView gate, TensorView up) noexcept = 0;
  // Rotary embedding, rotate-half (NeoX) style, in place on x[T, H, D] over its first rot_dim
  // dims: for i < rot_dim/2, angle = pos[t] * base_t^(-2i/rot_dim), base_t = bases ? bases[t] : base.
  // positions: [T] i32, bases: [T] f32 or null (device memory).
  virtual Status rope(TensorView x, const int32_t* positions, const float* bases, float base,
                      int rot_dim) noexcept = 0;
  // x[T, C] *= factors[T] (row scaling; Qwen v1 logn attention). factors: [T] f32 device memory.
  virtual Status scale_rows(TensorView x, const float* factors) noexcept = 0;
  // out[T, D] (f32) = table[ids[t], :]; ids: [T] i32 device memory, each < table rows (checked on
  // the host by the caller). A device backend must not read outside the table for an id out of
  // range (CUDA: a zero row): an overlapped decode step may carry a failed sample's −1 while the
  // engine reports it; the CPU backend refuses such an id with a message.
  virtual Status embedding(TensorView out, TensorView table, const int32_t* ids) noexcept = 0;
  // out[n, C] = x[rows[i], :]; rows: [n] i32 device memory.
  virtual Status gather_rows(TensorView out, TensorView x, const int32_t* rows) noexcept = 0;
  // Converts between float dtypes (same numel), e.g. bf16 weights to f32. dst, src on the device.
  virtual Status convert(TensorView dst, TensorView src) noexcept = 0;
  // Fills dst with seeded pseudo-random values (synthetic models): float dtypes uniform in
  // [-scale, scale], integer dtypes uniform random bits. Same (seed, dst size, dtype) → same values
  // on every backend.
  virtual Status fill_random(TensorView dst, float scale, uint64_t seed) noexcept = 0;
  // Samples one id per row of logits[B, V] into ids[B] (device memory); params: [B] host array.
  // Greedy rows take the first maximum. A row that holds a NaN gets −1 (no token can be drawn
  // from it; the engine reports it), on every backend (sample_row, sampler.hpp).
  virtual Status sample(int32_t* ids, TensorView logits, const SampleParams* params) noexcept = 0;
  // Fused forms the decode step uses to launch fewer kernels (same arithmetic as the unfused ops):
  //   add_rms_norm: x[M,D] += delta[M,D], then y[M,D] = rms_norm(x)·w[D]. delta may alias y;
  //                 y must not alias x.
  virtual Status add_rms_norm(TensorView x, TensorView delta, TensorView y, TensorView w, float eps) noexcept = 0;
  //   swiglu: out[M,F] = silu(gate_up[M, 0:F]) * gate_up[M, F:2F] (a fused gate|up projection's output).
  virtual Status swiglu(TensorView out, TensorView gate_up) noexcept = 0;
  //   rope_table: cs[T, rot_dim] = cos(angle_t,i) for i < rot_dim/2, then sin(angle_t,i), the angles
  //               of rope(); computed once per step and applied to every layer's q and k by
  //   rope_apply: x[T, H, D] rotated in place with the table — identical to rope() with the same
  //               positions, bases, base and rot_dim = cs.cols().
  virtual Status rope_table(TensorView cs, const int32_t* positions, const float* bases, float base) noexcept = 0;
  virtual Status rope_apply(TensorView x, TensorView cs) noexcept = 0;
  //   split_cols: src[M, C] → dsts[i][M, C_i] with Σ C_i = C, column blocks in order (n ≤ 4).
  virtual Status split_cols(TensorView src, const TensorView* dsts, int n) noexcept = 0;
  //   split_rope: qkv[T, (Hq + Hk + Hv)·D] (a fused q|k|v projection's output) → q[T, Hq, D] and
  //               k[T, Hk, D] rotated with cs[T, rot_dim], v[T, Hv, D] copied — identical to
  //               split_cols into q, k, v, then rope_apply on q and on k (one pass instead of three).
  virtual Status split_rope(TensorView qkv, TensorView q, TensorView k, TensorView v, TensorView cs) noexcept = 0;
  //   matmul_fused: matmul with the fusions of f (see MatmulFusion). matmul_fuses says whether this
  //               backend does f for M rows and the weights w ([N, K], only its shape and dtype
  //               are read) faster than the unfused ops; callers compose the unfused ops when it
  //               says no. A backend that fuses nothing keeps these defaults.
  virtual bool matmul_fuses(const MatmulFusion& f, int64_t M, const TensorView& w) const noexcept {
    (void)f, (void)M, (void)w;
    return false;
  }
  virtual Status matmul_fused(TensorView y, TensorView x, TensorView w, const TensorView* bias,
                              const MatmulFusion& f) noexcept {
    (void)y, (void)x, (void)w, (void)bias, (void)f;
    return {ErrorKind::internal, "matmul_fused: this backend fuses nothing (ask matmul_fuses first)"};
  }
  //   matmul_reads_bf16: whether matmul_fused(y, x, w, bias, f) also takes x as bf16 [M, K] (values
  //               already rounded, read as they are; the same product as x in f32 holding those
  //               values). Asked only where matmul_fuses said yes, for f without norm_w and swiglu.
  virtual bool matmul_reads_bf16(const MatmulFusion& f, int64_t M, const TensorView& w) const noexcept {
    (void)f, (void)M, (void)w;
    return false;
  }
};

}  // namespace kvrun
