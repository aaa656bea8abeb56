# Session 21, call I: the 4-stage ring (the committed choice after call H) through the GPTQ suite
# and memcheck, and against a 3-stage ring (.carry/v4) in the same call, two rounds.
set -uo pipefail
exec > >(tee ${OUT:-.}/session21-i.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 90 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases" | head -20
timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -2
row_header
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 16,32,64 --prompt-tokens 32 --new-tokens 128"
for rep in 1 2; do
  row "4 stages $rep" $G
  KVRUN_PLUGIN_PATH=$PWD/.carry/v4 row "3 stages $rep" $G
done
date -u
