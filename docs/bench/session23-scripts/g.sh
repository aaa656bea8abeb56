# Session 23, call G: the GPTQ fixtures against their transformers references on CUDA (new test
# cases of the weights_gptq suite), and the whole suite once more at the final code.
set -uo pipefail
exec > >(tee ${OUT:-.}/session23-g.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 400 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases|ppl|greedy|skipped" | head -40
date -u
