set -uo pipefail
exec > >(tee ${OUT:-.}/session8-review-check.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench; b=build-cuda/tests
echo "commit $(cat .carry/commit)"; date -u
for t in test_cuda_ops test_model_cuda; do timeout 200 $b/$t > /tmp/$t.log 2>&1; echo "$t rc=$? $(grep 'test cases' /tmp/$t.log | tail -1)"; grep -E "ERROR|FAILED" -A8 /tmp/$t.log | head -20; done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
B1="-c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
row b1-bf16-int8 $B1; KVRUN_CUDA_GEMV_RING=0 row b1-bf16-int8-ring0 $B1; row b1-bf16-int8 $B1
date -u
