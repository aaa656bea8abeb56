# Session 10, exp3: the bulk ring (STAGES 3) against the register path (0) with larger cache
# blocks (fewer, larger copies: 16-token blocks give 2 KiB K/V pieces and 16-32-byte metadata pieces).
set -uo pipefail
exec > >(tee ${OUT:-.}/session10-exp3.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for bt in 64 32 16; do for st in 3 0; do
  KVRUN_NAIVE_DECODE_STAGES=$st row b64-int8-bt$bt-st$st -c $C/qwen7b-bf16-int8-naive.toml --set cache.block_tokens=$bt --batch 64 --prompt-tokens 32 --new-tokens 1024
done; done
for bt in 64 16; do for st in 3 0; do
  KVRUN_NAIVE_DECODE_STAGES=$st row b1-8k-int8-bt$bt-st$st -c $C/qwen7b-bf16-int8-naive.toml --set cache.block_tokens=$bt --batch 1 --prompt-tokens 8192 --new-tokens 64
done; done
date -u
