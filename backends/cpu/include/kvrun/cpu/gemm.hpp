// kvrun — the CPU dense matrix product behind Ops::matmul, callable directly by plugins (a
// quantized Linear dequantizes a tile of weights to f32 and calls gemm_f32 on it).
//
// All variants compute, for m < M and n < N:
//     y[m·ldy + n] (=, or += when accumulate) Σ_k x[m·ldx + k] · w[n·ldw + k]
// i.e. y[M,N] = x[M,K] · w[N,K]ᵀ, with x and y f32 row-major (row strides ldx >= K, ldy >= N)
// and w stored as N rows of K elements (row stride ldw >= K): the layout of a Linear weight
// [out_features, in_features]. Accumulation is f32; bf16/f16 weights are converted on the fly
// (panels of at most a few hundred KiB per thread, never a whole f32 copy).
//
// Threading: the work is split over the pool (kvrun/cpu/parallel.hpp) by columns n (and rows m
// when N is small); called from inside a parallel_for range it runs on the calling thread only.
// y must not overlap x or w. M, N or K = 0 is allowed (K = 0 gives y = 0, or leaves y as is when
// accumulating).
#pragma once

#include <cstdint>

#include "kvrun/dtype.hpp"

namespace kvrun::cpu {

void gemm_f32(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const float* w, int64_t ldw,
              float* y, int64_t ldy, bool accumulate);
// w: bf16 bit patterns (kvrun::bf16_to_f32)
void gemm_bf16(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const uint16_t* w,
               int64_t ldw, float* y, int64_t ldy, bool accumulate);
// w: IEEE binary16 bit patterns
void gemm_f16(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const uint16_t* w,
              int64_t ldw, float* y, int64_t ldy, bool accumulate);
// Dispatch on the weight dtype (f32, f16 or bf16; anything else throws Error(internal)).
void gemm(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const void* w, DType wtype,
          int64_t ldw, float* y, int64_t ldy, bool accumulate);

}  // namespace kvrun::cpu
