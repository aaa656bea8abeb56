# Session 19, call A: the persistent ring GEMV (KVRUN_CUDA_GEMV_PERSIST=1, this build's default)
# against the kernels before it (=0) — the GEMV suites, memcheck of the new case, same-call A/B rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session19-a.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 240 $b/test_cuda_ops -tc='*matmul*,*GEMV*' 2>&1 | tail -4
row_header
for i in 1 2 3; do
  KVRUN_CUDA_GEMV_PERSIST=1 row "bf16 int8 B1 persist 1" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_CUDA_GEMV_PERSIST=0 row "bf16 int8 B1 persist 0" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
KVRUN_CUDA_GEMV_PERSIST=1 row "gptq int8 B1 persist 1" -c $C/qwen7b-gptq-int8-naive.toml $B1
KVRUN_CUDA_GEMV_PERSIST=0 row "gptq int8 B1 persist 0" -c $C/qwen7b-gptq-int8-naive.toml $B1
timeout 120 $b/test_model_cuda 2>&1 | tail -2
timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_cuda_ops -tc='*persistent*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Invalid" | head -4
date -u
