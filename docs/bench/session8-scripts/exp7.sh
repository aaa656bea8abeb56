set -uo pipefail
exec > >(tee ${OUT:-.}/session8-exp7.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench; b=build-cuda/tests
echo "commit $(cat .carry/commit)"; date -u
timeout 200 $b/test_cuda_ops > /tmp/t.log 2>&1; echo "test_cuda_ops rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"; grep -E "ERROR|FAILED" -A10 /tmp/t.log | head -30
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
B1="-c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  row "b1 ring=6" $B1
  KVRUN_CUDA_GEMV_NORM_SPLIT=1 row "b1 ring=6 norm split" $B1
done
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_cuda_ops -tc='*ring*,*matmul_fused*,*graph*' > /tmp/s1.log 2>&1; echo "memcheck test_cuda_ops ring/fused/graph rc=$? $(grep 'ERROR SUMMARY' /tmp/s1.log|tail -1)"
date -u
