# Prepared at the end of session 9, not run (device budget spent). On the branch wgmma-gemm:
#   scripts/gpu-pack.sh tiny-qwen2 && cp docs/bench/session9-scripts/next-bisect.sh .carry/ &&
#   nvcc -O3 -std=c++20 -gencode arch=compute_90a,code=sm_90a tools/stream_bench.cu -o .carry/stream_bench   (from main)
# then run scripts/gpu-run.sh bash .carry/next-bisect.sh with carry [".carry", ".fixtures"].
# KVRUN_CUDA_WGMMA_DEBUG: 0 the kernel; 1 no wgmma; 6 wgmma but no write-out; 7 write-out of whole
# tiles and parts but no fix-up. The per-kernel times say which part costs what.
set -uo pipefail
exec > >(tee ${OUT:-.}/next-bisect.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
[ -x .carry/stream_bench ] && timeout 120 .carry/stream_bench
for d in 0 1 6 7; do
  echo "== ncu dbg $d (q·k·v, o, gate·up, down)"
  KVRUN_CUDA_WGMMA_DEBUG=$d timeout 100 ncu --clock-control none --kernel-name regex:'gemm_wgmma' --launch-skip 300 --launch-count 4 --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_active.max --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time|sm__' | awk -F'","' '{printf "%s=%s ", $(NF-2), $NF} NR%3==0 {print ""}' | sed 's/"//g' | head -4
done
