# Session 18, call A: the RMSNorm-fused batch-1 GEMVs (q·k·v, gate·up, lm_head) through the ring
# kernel with the norm applied after the sums. The kernel suites, memcheck of the new case, and
# same-call A/B rows against KVRUN_CUDA_RING_NORM=0 (the register kernel's NORM variant).
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-a.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 200 $b/test_cuda_ops -tc='*matmul*,*GEMV*' 2>&1 | tail -4
timeout 120 compute-sanitizer --tool memcheck --print-limit 5 $b/test_cuda_ops -tc='*after its sums*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Status|Invalid" | head -6
row_header
for i in 1 2 3; do
  row "bf16 int8 B1 ringnorm" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_CUDA_RING_NORM=0 row "bf16 int8 B1 regnorm " -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "gptq int8 B1 ringnorm" -c $C/qwen7b-gptq-int8-naive.toml $B1
KVRUN_CUDA_RING_NORM=0 row "gptq int8 B1 regnorm " -c $C/qwen7b-gptq-int8-naive.toml $B1
timeout 200 $b/test_model_cuda 2>&1 | tail -3
date -u
