# Session 19, call D: the SwiGLU in the batch-1 gate·up GEMV's epilogue (MatmulFusion::swiglu_out,
# KVRUN_CUDA_SWIGLU_OUT=1, this build's default) against the GEMV then the SwiGLU kernel (=0), on
# the deferred-norm kernel (no spill; session 17's try had a 36-byte spill): suites, memcheck, A/B.
set -uo pipefail
exec > >(tee ${OUT:-.}/session19-d.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 240 $b/test_cuda_ops -tc='*matmul*,*GEMV*' 2>&1 | grep -E "ERROR|test cases|assertions" -A3 | head -30
row_header
for i in 1 2 3; do
  KVRUN_CUDA_SWIGLU_OUT=1 row "bf16 int8 B1 swo 1" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_CUDA_SWIGLU_OUT=0 row "bf16 int8 B1 swo 0" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "gptq int8 B1" -c $C/qwen7b-gptq-int8-naive.toml $B1
for v in 1 0; do KVRUN_CUDA_SWIGLU_OUT=$v timeout 150 $b/test_model_cuda 2>&1 | tail -2; done
timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_cuda_ops -tc='*swiglu_out*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Invalid" | head -4
date -u
