set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp9.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
row() { local name=$1; shift; echo "$name | $(timeout 60 $k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b64-cublas $I --batch 64 --new-tokens 128
for d in 0 1 2 3; do KVRUN_CUDA_WGMMA_DEBUG=$d row b64-dbg$d $I --batch 64 --new-tokens 128; done
for d in 0 1 2 3; do
  echo "== ncu dbg $d"
  KVRUN_CUDA_WGMMA_DEBUG=$d timeout 100 ncu --clock-control none --kernel-name regex:'gemm_wgmma' --launch-skip 300 --launch-count 4 --metrics gpu__time_duration.sum,dram__bytes_read.sum.per_second --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time|dram__' | awk -F'","' '{print $9, $(NF-2), $NF}' | head -8
done
echo "== ncu cublas"
KVRUN_CUDA_WGMMA_MAX_ROWS=0 timeout 100 ncu --clock-control none --kernel-name regex:'nvjet' --launch-skip 300 --launch-count 8 --metrics gpu__time_duration.sum,dram__bytes_read.sum.per_second --csv $k bench $I --batch 64 --new-tokens 8 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time|dram__' | awk -F'","' '{print substr($5,1,40), $9, $(NF-2), $NF}' | head -16
date -u
