set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp3.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_cuda_ops -tc='*wgmma*' > /tmp/w.log 2>&1; echo "test_cuda_ops wgmma rc=$? $(grep 'test cases' /tmp/w.log | tail -1)"
grep -E "ERROR|FAILED|skipped" -A12 /tmp/w.log | head -40
row() { local name=$1; shift; echo "$name | $(timeout 120 $k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b64-cublas $I --batch 64 --new-tokens 128
for st in 8 6 4; do
  KVRUN_CUDA_WGMMA_STAGES=$st row b64-st$st $I --batch 64 --new-tokens 128
  KVRUN_CUDA_WGMMA_STAGES=$st KVRUN_CUDA_WGMMA_DEBUG=1 row b64-st$st-loadsonly $I --batch 64 --new-tokens 128
  KVRUN_CUDA_WGMMA_STAGES=$st KVRUN_CUDA_WGMMA_DEBUG=2 row b64-st$st-mmaonly $I --batch 64 --new-tokens 128
done
# per-kernel durations: launches of one decode layer (q·k·v, o, gate·up, down) after the first step
for stsp in 8:0 8:1 8:2 8:4 8:8 4:0 4:2; do st=${stsp%%:*}; sp=${stsp##*:}; {
  echo "== ncu stages $st splits $sp"
  env KVRUN_CUDA_WGMMA_STAGES=$st $([ $sp != 0 ] && echo KVRUN_CUDA_WGMMA_SPLITK=$sp) timeout 100 ncu --clock-control none --kernel-name regex:gemm_wgmma --launch-skip 200 --launch-count 5 --metrics gpu__time_duration.sum --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time' | awk -F'","' '{print $9, $NF}' | head -5
}; done
KVRUN_CUDA_WGMMA_MAX_ROWS=0 timeout 100 ncu --clock-control none --kernel-name regex:'gemm|Kernel|sm90' --launch-skip 300 --launch-count 12 --metrics gpu__time_duration.sum --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time' | awk -F'","' '{print substr($5,1,60), $9, $NF}' | head -12
date -u
