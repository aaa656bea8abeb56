# Session 18, call I: the batch-1 register GEMV with the fused RMSNorm writing x·g and scaling each
# row's sum by 1/rms at the end (KVRUN_CUDA_DEFER_NORM=1, this build's default) against normalizing
# x first (=0): the kernel suites, memcheck of the new case, same-call A/B rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-i.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 200 $b/test_cuda_ops -tc='*matmul*,*GEMV*' 2>&1 | tail -3
timeout 150 compute-sanitizer --tool memcheck --print-limit 5 $b/test_cuda_ops -tc='*deferred*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Invalid" | head -4
row_header
for i in 1 2 3; do
  KVRUN_CUDA_DEFER_NORM=1 row "bf16 int8 B1 defer 1" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_CUDA_DEFER_NORM=0 row "bf16 int8 B1 defer 0" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "bf16 fp16 flash B1" -c $C/qwen7b-bf16-fp16-flash.toml $B1
row "gptq int8 B1" -c $C/qwen7b-gptq-int8-naive.toml $B1
timeout 120 $b/test_model_cuda 2>&1 | tail -2
date -u
