set -uo pipefail
exec > >(tee ${OUT:-.}/session8-exp1.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
B1="-c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
for e in 0 1; do for kb in 0 16 32 64 128; do
  KVRUN_CUDA_GEMV_EARLY_TRIGGER=$e KVRUN_CUDA_GEMV_L2PF_KB=$kb row "b1 early=$e pf=${kb}K" $B1
done; done; done
date -u
timeout 200 build-cuda/tests/test_cuda_ops > /tmp/t.log 2>&1; echo "test_cuda_ops rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"
KVRUN_CUDA_GEMV_EARLY_TRIGGER=1 KVRUN_CUDA_GEMV_L2PF_KB=64 timeout 200 build-cuda/tests/test_cuda_ops > /tmp/t.log 2>&1; echo "test_cuda_ops (early, pf 64K) rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"
date -u
