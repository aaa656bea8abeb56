# Session 10, exp5: batch 64 with the cuBLAS calls' fusions off — o/down with β = 0 instead of
# accumulating into the residual (KVRUN_CUDA_FUSE=0, which also unfuses the rest) and q·k·v's bias
# outside the GEMM's epilogue (KVRUN_CUDA_LT_BIAS=0): does cuBLASLt stream faster without them?
set -uo pipefail
exec > >(tee ${OUT:-.}/session10-exp5.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2; do
  row b64-default -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_CUDA_FUSE=0 row b64-fuse0 -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_CUDA_LT_BIAS=0 row b64-ltbias0 -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
KVRUN_CUDA_FUSE=0 KVRUN_CUDA_LT_BIAS=0 KVRUN_CUDA_LT_TUNE_LOG=1 $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 256 2>&1 | grep -E "plan m 64|^ batch" -A1 | cut -c1-1200
echo "== profile, FUSE=0 LT_BIAS=0"
KVRUN_CUDA_FUSE=0 KVRUN_CUDA_LT_BIAS=0 OUT=/tmp/p64 BATCH=64 PROMPT=480 NEW=200 SKIP=40000 COUNT=1500 ATTN=naive CACHE=int8 TOP=30 scripts/gpu-profile.sh
date -u
