# Session 16, call D: call C ran batch 64 with flash + fp16 at 9.22 ms/step against 8.73-8.99 in
# sessions 14-15. Which part of f8f3d16 costs it: rows of the final build against 74e533d's four
# modules (base), against the final attention modules with the K/V data loads through L1 again
# (__ldg; the own key's re-read and the int8 scales/zeros stay __ldcg: ldg), and against the final
# attention with 74e533d's cache modules (basecache). Alternating, twice.
set -uo pipefail
exec > >(tee ${OUT:-.}/session16-d.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/old.tgz -C /tmp/o
O=/tmp/o/old
row_header
for r in 1 2; do
  row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B64
  KVRUN_PLUGIN_PATH=$O/base row "bf16 fp16 flash, 74e533d modules" -c $C/qwen7b-bf16-fp16-flash.toml $B64
  KVRUN_PLUGIN_PATH=$O/ldg row "bf16 fp16 flash, ldg" -c $C/qwen7b-bf16-fp16-flash.toml $B64
  KVRUN_PLUGIN_PATH=$O/basecache row "bf16 fp16 flash, 74e533d caches" -c $C/qwen7b-bf16-fp16-flash.toml $B64
done
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B64
KVRUN_PLUGIN_PATH=$O/ldg row "bf16 int8 naive, ldg" -c $C/qwen7b-bf16-int8-naive.toml $B64
for r in 1 2; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=$O/ldg row "bf16 int8 naive, ldg" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B1
KVRUN_PLUGIN_PATH=$O/ldg row "bf16 fp16 flash, ldg" -c $C/qwen7b-bf16-fp16-flash.toml $B1
date -u
