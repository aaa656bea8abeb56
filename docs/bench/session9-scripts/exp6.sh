set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp6.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_cuda_ops -tc='*wgmma*' > /tmp/w.log 2>&1; echo "test_cuda_ops wgmma rc=$? $(grep 'test cases' /tmp/w.log | tail -1)"
grep -E "ERROR|FAILED|skipped" -A12 /tmp/w.log | head -40
row() { local name=$1; shift; echo "$name | $(timeout 120 $k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
for r in 1 2; do
KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b64-cublas $I --batch 64 --new-tokens 128
for st in 9 6 4; do KVRUN_CUDA_WGMMA_STAGES=$st row b64-st$st $I --batch 64 --new-tokens 128; done
done
for st in 9 4; do
  echo "== ncu stages $st"
  KVRUN_CUDA_WGMMA_STAGES=$st timeout 100 ncu --clock-control none --kernel-name regex:'gemm_wgmma|stream_k' --launch-skip 300 --launch-count 8 --metrics gpu__time_duration.sum,dram__bytes_read.sum.per_second --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time|dram__' | awk -F'","' '{print substr($5,1,30), $9, $(NF-2), $NF}' | head -16
done
for bb in 16 32; do
  row b$bb-wg $I --batch $bb --new-tokens 256
  KVRUN_CUDA_WGMMA_STAGES=4 row b$bb-wg4 $I --batch $bb --new-tokens 256
  KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b$bb-cublas $I --batch $bb --new-tokens 256
done
date -u
