# Session 18, call G: the tail prefetch (experimental build, uncommitted: KVRUN_CUDA_TAIL_PREFETCH=bytes;
# tail-prefetch.patch): the last blocks of each batch-1 bf16 GEMV send the first bytes of the rows of
# the next GEMV's first-wave blocks into L2 (cp.async.bulk.prefetch.L2) as their own loops end.
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-g.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit) + KVRUN_CUDA_TAIL_PREFETCH (uncommitted)"; date -u
row_header
for i in 1 2; do
  for p in 0 2048 4096 8192; do
    KVRUN_CUDA_TAIL_PREFETCH=$p row "B1 tail prefetch $p" -c $C/qwen7b-bf16-int8-naive.toml $B1
  done
done
KVRUN_CUDA_TAIL_PREFETCH=4096 timeout 120 $b/test_model_cuda 2>&1 | tail -2
KVRUN_CUDA_TAIL_PREFETCH=4096 timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8 --new-tokens 4 2>&1 | grep -E "ERROR SUMMARY|Invalid" | head -3
date -u
