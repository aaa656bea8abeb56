set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp4.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
row() { local name=$1; shift; echo "$name | $(timeout 120 $k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b64-cublas $I --batch 64 --new-tokens 128
for st in 8 4; do for d in 1 3 4; do
  KVRUN_CUDA_WGMMA_STAGES=$st KVRUN_CUDA_WGMMA_DEBUG=$d row b64-st$st-dbg$d $I --batch 64 --new-tokens 128
done; done
for stsp in 8:0 4:0; do st=${stsp%%:*}; sp=${stsp##*:}; for d in 1 3 4; do
  echo "== ncu stages $st splits $sp dbg $d"
  env KVRUN_CUDA_WGMMA_DEBUG=$d KVRUN_CUDA_WGMMA_STAGES=$st timeout 100 ncu --clock-control none --kernel-name regex:gemm_wgmma --launch-skip 200 --launch-count 4 --metrics gpu__time_duration.sum,dram__bytes_read.sum.per_second --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time|dram__' | awk -F'","' '{print $9, $(NF-2), $NF}' | head -8
done; done
date -u
