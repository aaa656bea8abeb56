# Session 21, call H: gemm_tc_kernel variants as carried modules (.carry/vN), same call, two rounds:
# v1 a 6-stage ring, v2 a 4-stage ring, v3 three blocks per SM for 9..32 rows (80 registers),
# against the committed kernel (5 stages, two blocks per SM for two tiles a warp).
set -uo pipefail
exec > >(tee ${OUT:-.}/session21-h.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
row_header
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 16,32,64 --prompt-tokens 32 --new-tokens 128"
for rep in 1 2; do
  row "base $rep" $G
  for v in v1 v2 v3; do KVRUN_PLUGIN_PATH=$PWD/.carry/$v row "$v $rep" $G; done
done
date -u
