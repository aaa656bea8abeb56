set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp11.log) 2>&1
k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
for d in 0 5; do
echo "== ncu dbg $d: o and gate·up of one layer"
KVRUN_CUDA_WGMMA_DEBUG=$d timeout 150 ncu --clock-control none --kernel-name regex:'gemm_wgmma' --launch-skip 301 --launch-count 2 --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section LaunchStats --section Occupancy --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_active.min,smsp__cycles_active.avg $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -v '^==PROF==' | grep -E 'Duration|Throughput|cycles_active|Stall|Issued|Eligible|Active Warps|Registers|Shared Memory|Grid Size|Waves|Elapsed|smsp__|sm__|gpu__|Warp Cycles|No Eligible|Block Limit|Theoretical|Achieved|^  [a-z_]+.*\(' | head -70
done
date -u
