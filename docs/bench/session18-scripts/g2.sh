# Session 18, call G2 (after G: 2048–8192 bytes per row were slower, 3.94–4.37 vs 3.85): the tail prefetch (experimental build, uncommitted: KVRUN_CUDA_TAIL_PREFETCH=bytes):
# the last blocks of each batch-1 bf16 GEMV send the first bytes of the rows of the next GEMV's
# first-wave blocks into L2 (cp.async.bulk.prefetch.L2) as their own loops end.
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-g2.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit) + KVRUN_CUDA_TAIL_PREFETCH (uncommitted)"; date -u
row_header
for i in 1 2; do
  for p in 0 256 512 1024; do
    KVRUN_CUDA_TAIL_PREFETCH=$p row "B1 tail prefetch $p" -c $C/qwen7b-bf16-int8-naive.toml $B1
  done
done
date -u
