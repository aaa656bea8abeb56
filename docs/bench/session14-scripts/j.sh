# Session 14, call J (diagnostic, branch skinny-gemm at 034acc0): ncu sections of the skinny GEMM's
# four kernels in the first batch-64 decode step (why its weights arrive at ~5 GB/s per block).
set -uo pipefail
exec > >(tee ${OUT:-.}/session14-j.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
KVRUN_CUDA_SKINNY=1 timeout 200 ncu --clock-control none --graph-profiling node --kernel-name regex:skinny --launch-skip 132 --launch-count 4 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats --section SchedulerStats \
  $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 4 2>&1 | grep -v "^kvrun\|^pipeline\|^model\|^memory\|^bandwidth\|^prompts" | grep -E "skinny|Duration|Throughput|Registers|Achieved Occupancy|Theoretical Occupancy|Block Limit|Warp Cycles|Stall|Issued Warp|No Eligible|Active Warps|Eligible Warps|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|DRAM|Shared Memory|smsp__pcsamp|OPT|est. speedup" | head -150
date -u
