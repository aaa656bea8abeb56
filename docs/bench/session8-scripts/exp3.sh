set -uo pipefail
exec > >(tee ${OUT:-.}/session8-exp3.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit skipdbg2"; date -u
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
B1="-c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
for s in 15 47 79 143 271 495 527 0; do KVRUN_DEBUG_SKIP=$s row "b1 skip=$s" $B1; done
KVRUN_CUDA_FUSE=0 KVRUN_DEBUG_SKIP=15 row "b1 unfused skip=15" $B1
done
for s in 15 47 79 143 271 495 0; do KVRUN_DEBUG_SKIP=$s row "b1 gptq skip=$s" -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256; done
date -u
