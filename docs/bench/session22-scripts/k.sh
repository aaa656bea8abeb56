# Session 22, call K: gemv1's x-fragment reads only in the lanes that use them (g < 2; the other
# lanes pass zeros without a shared-memory access: ncu reported 24–26 % excess wavefronts) against
# main's module (.carry/v0) in the same call; the GPTQ CUDA cases.
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-k.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|worst|test cases" | head -8
row_header
for i in 1 2 3; do
  KVRUN_PLUGIN_PATH=$PWD/.carry/v0 row "main" -c $C/qwen7b-gptq-int8-naive.toml $B1
  row "new" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
KVRUN_PLUGIN_PATH=$PWD/.carry/v0 row "main q2.5" -c $C/qwen7b-gptq-int8-naive.toml $B1 --set model.synthetic=qwen2.5-7b
row "new q2.5" -c $C/qwen7b-gptq-int8-naive.toml $B1 --set model.synthetic=qwen2.5-7b
date -u
