# Prepared in session 10, not run (no device time left): branch lt-search. Does a cuBLASLt
# configuration the heuristic does not offer stream the batch-64 matmuls faster (o_proj runs at
# 2.5-2.8 TB/s, q·k·v at 3.35, on the heuristic's picks)? Build the branch with
# scripts/gpu-pack.sh tiny-qwen2, then scripts/gpu-run.sh bash .carry/next-lt-search.sh
set -uo pipefail
exec > >(tee ${OUT:-.}/session11-lt-search.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
date -u
timeout 300 $b/test_cuda_ops -tc='*search*' > /tmp/t.log 2>&1; echo "test_cuda_ops search rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"
grep -E "ERROR|FAILED" -A8 /tmp/t.log | head -20
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
KVRUN_CUDA_LT_SEARCH=1024 KVRUN_CUDA_LT_TUNE_LOG=1 $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 64 2>&1 | grep -E "plan m 64|^ batch" -A1 | cut -c1-2500
for r in 1 2; do
  row b64-default -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_CUDA_LT_SEARCH=1024 row b64-search -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
date -u
