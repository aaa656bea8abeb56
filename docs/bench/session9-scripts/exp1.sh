set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp1.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_cuda_ops -tc='*wgmma*' > /tmp/w.log 2>&1; echo "test_cuda_ops wgmma rc=$? $(grep 'test cases' /tmp/w.log | tail -1)"
grep -E "ERROR|FAILED|skipped" -A12 /tmp/w.log | head -60
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_cuda_ops -tc='*wgmma*' > /tmp/s.log 2>&1; echo "memcheck wgmma rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
grep -B2 -A10 'Invalid\|error' /tmp/s.log | head -30
row() { local name=$1; shift; echo "$name | $(timeout 120 $k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
for r in 1 2; do
  row b64-wg8 $I --batch 64 --new-tokens 512
  KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b64-cublas $I --batch 64 --new-tokens 512
  KVRUN_CUDA_WGMMA_STAGES=4 row b64-wg4 $I --batch 64 --new-tokens 512
done
for s in 1 2 4; do KVRUN_CUDA_WGMMA_SPLITK=$s row b64-wg8-split$s $I --batch 64 --new-tokens 512; done
for bb in 16 32; do
  row b$bb-wg8 $I --batch $bb --new-tokens 256
  KVRUN_CUDA_WGMMA_STAGES=4 row b$bb-wg4 $I --batch $bb --new-tokens 256
  KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b$bb-cublas $I --batch $bb --new-tokens 256
done
row b1-wg $I --batch 1 --new-tokens 128
KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b1-cublas $I --batch 1 --new-tokens 128
KVRUN_CUDA_WGMMA_MAX_ROWS=0 KVRUN_CUDA_LT_TUNE_LOG=1 timeout 120 $k bench $I --batch 64 --new-tokens 8 2>&1 | grep 'cuBLASLt plan m 64' | head -8
for t in test_cuda_ops test_model_cuda; do
  timeout 300 $b/$t > /tmp/$t.log 2>&1; echo "$t rc=$? $(grep 'test cases' /tmp/$t.log | tail -1)"; grep -E "ERROR|FAILED" -A8 /tmp/$t.log | head -30; done
date -u
