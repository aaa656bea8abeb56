# Session 24, call D: one tile a warp for the wide Linears (q·k·v 12288, gate·up 22016 outputs —
# faster alone under ncu in call A) and two for o and down (KVRUN_GPTQ_WG_ONE_TILE_ABOVE_N=8192,
# an experiment switch), against two everywhere.
set -uo pipefail
exec > >(tee ${OUT:-.}/session24-d.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "== CUDA Linear cases, one tile above N 600"; KVRUN_GPTQ_WG_ONE_TILE_ABOVE_N=600 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | grep -E "ERROR|test cases" | head -4
row_header
G="--batch 16,32,48,64 --prompt-tokens 32 --new-tokens 128"
for i in 1 2 3; do
  row "two" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_GPTQ_WG_ONE_TILE_ABOVE_N=8192 row "wide one" -c $C/qwen7b-gptq-int8-naive.toml $G
done
date -u
