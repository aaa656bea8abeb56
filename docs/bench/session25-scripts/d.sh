# Session 25, call D: gemm_wg_bf16 (bf16 weights at 9..64 rows on warpgroup MMA, KVRUN_CUDA_WG_GEMM)
# — correctness (test_cuda_ops, memcheck of its cases, the model suite with tiny-qwen2), then
# same-call decode rows against cuBLAS (KVRUN_CUDA_WG_GEMM=0) and with one / two tiles a warp forced.
set -uo pipefail
exec > >(tee ${OUT:-.}/session25-d.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.limit --format=csv,noheader
echo "== test_cuda_ops"
timeout 200 $b/test_cuda_ops 2>&1 | grep -E "ERROR|FAIL|test cases|not compute" | head -30
date -u
echo "== memcheck of the new case"
timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_cuda_ops -tc="*warpgroup MMA at 9..64*" 2>&1 | tail -3
date -u
row_header
for i in 1 2; do
  row "wg" -c $C/qwen7b-bf16-int8-naive.toml $B64
  KVRUN_CUDA_WG_GEMM=0 row "cublas" -c $C/qwen7b-bf16-int8-naive.toml $B64
done
S="--batch 16,32,48,64 --prompt-tokens 32 --new-tokens 128"
row "wg" -c $C/qwen7b-bf16-int8-naive.toml $S
KVRUN_CUDA_WG_GEMM=0 row "cublas" -c $C/qwen7b-bf16-int8-naive.toml $S
KVRUN_CUDA_WG_TILES=1 row "wg tw1" -c $C/qwen7b-bf16-int8-naive.toml $S
KVRUN_CUDA_WG_TILES=2 row "wg tw2" -c $C/qwen7b-bf16-int8-naive.toml $S
row "wg q2.5" -c $C/qwen7b-bf16-int8-naive.toml --set model.synthetic=qwen2.5-7b $B64
KVRUN_CUDA_WG_GEMM=0 row "cublas q2.5" -c $C/qwen7b-bf16-int8-naive.toml --set model.synthetic=qwen2.5-7b $B64
row "wg fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B64
KVRUN_CUDA_WG_GEMM=0 row "cublas fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B64
date -u
echo "== model suite (tiny-qwen2)"
timeout 200 $b/test_model_cuda 2>&1 | grep -E "ERROR|FAIL|test cases" | head -12
date -u
