# Session 19, call F: the batch-1 GEMV's wave rule at the Qwen2.5-7B shape (KVRUN_CUDA_GEMV_MIN_WAVES_PCT:
# 90 = the rule so far; 80: o and down in 224 ring blocks instead of 448; 70: q·k·v in 288 register
# blocks too; 40: o and down in 112, q·k·v in 288), Qwen-7B as a check (unchanged above 50).
set -uo pipefail
exec > >(tee ${OUT:-.}/session19-f.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
Q25="--set model.synthetic=qwen2.5-7b"
row_header
for i in 1 2; do
  for p in 90 80 70 40; do
    KVRUN_CUDA_GEMV_MIN_WAVES_PCT=$p row "qwen2.5 bf16 int8 B1 waves $p" -c $C/qwen7b-bf16-int8-naive.toml $Q25 $B1
  done
done
for p in 90 60; do KVRUN_CUDA_GEMV_MIN_WAVES_PCT=$p row "qwen7b bf16 int8 B1 waves $p" -c $C/qwen7b-bf16-int8-naive.toml $B1; done
for p in 90 70; do
  echo "== ncu, qwen2.5 batch 1, waves $p"
  KVRUN_CUDA_GEMV_MIN_WAVES_PCT=$p timeout 100 ncu --clock-control none --cache-control none -k regex:gemv --launch-skip 1 --launch-count 4 \
    --metrics gpu__time_duration.sum,launch__grid_size \
    $k bench -c $C/qwen7b-bf16-int8-naive.toml $Q25 --batch 1 --prompt-tokens 32 --new-tokens 4 2>&1 | grep -E "duration|grid_size" | sed 's/  */ /g'
done
date -u
