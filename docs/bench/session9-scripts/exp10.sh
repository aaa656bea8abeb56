set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp10.log) 2>&1
k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
for st in 9 4; do for d in 0 4 5 1; do
  echo "== ncu stages $st dbg $d"
  KVRUN_CUDA_WGMMA_STAGES=$st KVRUN_CUDA_WGMMA_DEBUG=$d timeout 100 ncu --clock-control none --kernel-name regex:'gemm_wgmma' --launch-skip 300 --launch-count 4 --metrics gpu__time_duration.sum,dram__bytes_read.sum.per_second,lts__t_bytes.sum.per_second --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time|dram__|lts__' | awk -F'","' '{print $9, $(NF-2), $NF}' | head -12
done; done
date -u
