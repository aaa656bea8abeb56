set -uo pipefail
exec > >(tee ${OUT:-.}/session8-exp6.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench; b=build-cuda/tests
echo "commit $(cat .carry/commit)"; date -u
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
B1="-c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  row "b1 ring=6" $B1
  KVRUN_CUDA_GEMV_RING=7 row "b1 ring=7" $B1
  KVRUN_CUDA_GEMV_EARLY_TRIGGER=1 row "b1 ring=6 early" $B1
  KVRUN_NAIVE_DECODE_SPLITS=2 row "b1 ring=6 splits=2" $B1
  KVRUN_NAIVE_DECODE_SPLITS=4 row "b1 ring=6 splits=4" $B1
  KVRUN_CUDA_GEMV_RING=7 KVRUN_CUDA_GEMV_EARLY_TRIGGER=1 row "b1 ring=7 early" $B1
  KVRUN_DEBUG_SKIP=15 row "b1 ring=6 GEMVs only" $B1
  KVRUN_DEBUG_SKIP=4 row "b1 ring=6 no attention" $B1
done
date -u
