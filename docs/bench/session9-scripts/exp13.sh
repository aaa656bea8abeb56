set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp13.log) 2>&1
k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
for gr in 32 64 96 128 132; do
  echo "== ncu grid $gr (q·k·v, o, gate·up, down)"
  KVRUN_CUDA_WGMMA_GRID=$gr timeout 100 ncu --clock-control none --kernel-name regex:'gemm_wgmma' --launch-skip 300 --launch-count 4 --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_active.max --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time|sm__' | awk -F'","' '{printf "%s=%s ", $(NF-2), $NF} NR%3==0 {print ""}' | sed 's/"//g' | head -4
done
echo "== ncu grid 132 dbg 5 (W only, no wgmma)"
KVRUN_CUDA_WGMMA_DEBUG=5 KVRUN_CUDA_WGMMA_GRID=32 timeout 100 ncu --clock-control none --kernel-name regex:'gemm_wgmma' --launch-skip 300 --launch-count 4 --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_active.max --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time|sm__' | awk -F'","' '{printf "%s=%s ", $(NF-2), $NF} NR%3==0 {print ""}' | sed 's/"//g' | head -4
date -u
