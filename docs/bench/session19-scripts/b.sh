# Session 19, call B: which GEMVs the persistent kernel slows (call A: 3.88 against 3.76 ms/step):
# KVRUN_CUDA_GEMV_PERSIST as a mask (1 Linears without the norm, 2 with it, 4 lm_head); ncu of the
# first step's GEMVs both ways; the failing assertions of call A's GEMV suite.
set -uo pipefail
exec > >(tee ${OUT:-.}/session19-b.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 240 $b/test_cuda_ops -tc='*matmul*,*GEMV*' 2>&1 | grep -B3 -A12 "ERROR" | head -80
row_header
for m in 0 1 2 4 7 0 1 2; do
  KVRUN_CUDA_GEMV_PERSIST=$m row "bf16 int8 B1 persist $m" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
for m in 7 0; do
  echo "== ncu, KVRUN_CUDA_GEMV_PERSIST=$m"
  KVRUN_CUDA_GEMV_PERSIST=$m timeout 200 ncu --clock-control none --cache-control none -k regex:gemv --launch-count 9 \
    --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__shared_mem_per_block_dynamic,sm__warps_active.avg.pct_of_peak_sustained_active,launch__occupancy_limit_shared_mem \
    $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 4 2>&1 | grep -E "gemv|duration|dram__|grid_size|shared_mem|warps_active|occupancy" | sed 's/  */ /g' | cut -c1-150
done
date -u
