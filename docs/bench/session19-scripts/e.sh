# Session 19, call E: the Qwen2.5-7B shape (synthetic "qwen2.5-7b": GQA 28/4, hidden 3584, MLP 18944,
# 28 layers) against its floor today, next to the Qwen-7B rows of the same call; ncu of one
# batch-1 layer's GEMVs at its shapes.
set -uo pipefail
exec > >(tee ${OUT:-.}/session19-e.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
Q25="--set model.synthetic=qwen2.5-7b"
row_header
row "qwen7b bf16 int8 B1" -c $C/qwen7b-bf16-int8-naive.toml $B1
row "qwen2.5 bf16 int8 B1" -c $C/qwen7b-bf16-int8-naive.toml $Q25 $B1
row "qwen2.5 bf16 int8 B1" -c $C/qwen7b-bf16-int8-naive.toml $Q25 $B1
row "qwen2.5 bf16 fp16 flash B1" -c $C/qwen7b-bf16-fp16-flash.toml $Q25 $B1
row "qwen2.5 gptq int8 B1" -c $C/qwen7b-gptq-int8-naive.toml $Q25 $B1
row "qwen7b gptq int8 B1" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "qwen2.5 bf16 int8 B64" -c $C/qwen7b-bf16-int8-naive.toml $Q25 $B64
row "qwen7b bf16 int8 B64" -c $C/qwen7b-bf16-int8-naive.toml $B64
echo "== ncu, qwen2.5 batch 1, first decode step's GEMVs"
timeout 150 ncu --clock-control none --cache-control none -k regex:gemv --launch-count 9 \
  --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size \
  $k bench -c $C/qwen7b-bf16-int8-naive.toml $Q25 --batch 1 --prompt-tokens 32 --new-tokens 4 2>&1 | grep -E "^  [a-z_]*gemv|void|duration|dram__|grid_size" | sed 's/  */ /g' | cut -c1-110
date -u
