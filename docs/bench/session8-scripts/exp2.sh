set -uo pipefail
exec > >(tee ${OUT:-.}/session8-exp2.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
B1="-c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
for s in 0 1 2 4 8 6 7 15; do KVRUN_DEBUG_SKIP=$s row "b1 skip=$s" $B1; done
KVRUN_CUDA_PDL=0 row "b1 nopdl" $B1
KVRUN_CUDA_PDL=0 KVRUN_DEBUG_SKIP=15 row "b1 nopdl skip=15" $B1
done
for s in 0 15; do KVRUN_DEBUG_SKIP=$s row "b1 gptq skip=$s" -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256; done
for s in 0 16 2 4 8 30; do KVRUN_DEBUG_SKIP=$s row "b64 skip=$s" -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 512; done
date -u
