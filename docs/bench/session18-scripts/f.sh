# Session 18, call F: the GPU suites on the session's final code (run_step's id check moved first;
# the suites search KVRUN_PLUGIN_PATH first — checked here with an empty folder on it).
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-f.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/empty-plugins
for t in test_model_cuda test_cuda_ops test_plugin_cache_int8 test_plugin_cache_fp16 test_plugin_attention_naive \
         test_plugin_attention_flash test_plugin_weights_gptq; do
  echo "== $t"; KVRUN_PLUGIN_PATH=/tmp/empty-plugins timeout 300 $b/$t 2>&1 | grep -E "^tests:|test cases|Status|skipped" | head -4
done
row_header
row "bf16 int8 B1" -c $C/qwen7b-bf16-int8-naive.toml $B1
row "gptq int8 B1" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
