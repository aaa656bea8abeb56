set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp2.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
for sw in 1 0; do
KVRUN_CUDA_WGMMA_SWIZZLE=$sw timeout 120 $b/test_cuda_ops -tc='*wgmma*' > /tmp/w.log 2>&1; echo "swizzle $sw test_cuda_ops wgmma rc=$? $(grep 'test cases' /tmp/w.log | tail -1)"
grep -E "ERROR|FAILED|skipped" -A12 /tmp/w.log | head -40
done
row() { local name=$1; shift; echo "$name | $(timeout 120 $k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b64-cublas $I --batch 64 --new-tokens 128
for sw in 1 0; do for d in 0 1 2; do
  KVRUN_CUDA_WGMMA_SWIZZLE=$sw KVRUN_CUDA_WGMMA_DEBUG=$d row b64-sw$sw-dbg$d $I --batch 64 --new-tokens 128
done; done
KVRUN_CUDA_WGMMA_STAGES=4 row b64-sw1-st4 $I --batch 64 --new-tokens 128
date -u
