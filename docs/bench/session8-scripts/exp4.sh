set -uo pipefail
exec > >(tee ${OUT:-.}/session8-exp4.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench; b=build-cuda/tests
echo "commit $(cat .carry/commit)"; date -u
for rr in "3 3" "4 4" "6 6"; do set -- $rr
KVRUN_CUDA_GEMV_RING=$1 KVRUN_CUDA_GEMV_RING_NORM=$2 timeout 200 $b/test_cuda_ops > /tmp/t.log 2>&1; echo "test_cuda_ops ring=$1/$2 rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"; grep -E "ERROR|FAILED" -A6 /tmp/t.log | head -20; done
KVRUN_CUDA_GEMV_RING=4 KVRUN_CUDA_GEMV_RING_NORM=4 timeout 200 $b/test_model_cuda > /tmp/t.log 2>&1; echo "test_model_cuda ring=4/4 rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
B1="-c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
for rr in "0 0" "3 0" "4 0" "6 0" "0 3" "0 4" "0 6" "4 3" "4 4" "6 4" "6 6"; do set -- $rr
  KVRUN_CUDA_GEMV_RING=$1 KVRUN_CUDA_GEMV_RING_NORM=$2 row "b1 ring=$1/$2" $B1; done
for rr in "0 0" "4 4" "6 6"; do set -- $rr
  KVRUN_DEBUG_SKIP=15 KVRUN_CUDA_GEMV_RING=$1 KVRUN_CUDA_GEMV_RING_NORM=$2 row "b1 GEMVs only ring=$1/$2" $B1; done
done
date -u
timeout 300 KVRUN_CUDA_GEMV_RING=6 KVRUN_CUDA_GEMV_RING_NORM=6 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_cuda_ops -tce='*out-of-memory*' > /tmp/s1.log 2>&1; echo "memcheck test_cuda_ops ring 6/6 rc=$? $(grep 'ERROR SUMMARY' /tmp/s1.log|tail -1)"
date -u
