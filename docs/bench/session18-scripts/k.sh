# Session 18, call K: the fused-norm batch-1 GEMV forming x·g inside its loop from x and the norm
# weights (KVRUN_CUDA_DEFER_NORM=2: no shared copy of x, no barrier before the loop) against the
# shared copy of x·g (=1, the default). Kernel tests, same-call A/B rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-k.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 100 $b/test_cuda_ops -tc='*deferred*,*matmul_fused*' 2>&1 | tail -3
row_header
for i in 1 2; do
  KVRUN_CUDA_DEFER_NORM=1 row "bf16 int8 B1 defer 1" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_CUDA_DEFER_NORM=2 row "bf16 int8 B1 defer 2" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
KVRUN_CUDA_DEFER_NORM=0 row "bf16 int8 B1 defer 0" -c $C/qwen7b-bf16-int8-naive.toml $B1
date -u
