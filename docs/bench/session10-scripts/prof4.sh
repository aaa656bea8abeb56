# Session 10, prof4: where the batch-1 GPTQ GEMV (gemv1_mma_kernel) spends its time: SOL, occupancy,
# warp states and scheduler statistics of one call of each Linear shape (q·k·v, o, gate·up, down).
set -uo pipefail
exec > >(tee ${OUT:-.}/session10-prof4.log) 2>&1
echo "commit $(cat .carry/commit)"; date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
ncu --clock-control none -k regex:gemv1 --launch-skip 128 --launch-count 4 --section SpeedOfLight --section Occupancy \
  --section WarpStateStats --section SchedulerStats --section LaunchStats \
  build-cuda/apps/kvrun generate -c /tmp/g.toml --prompt-ids 1,2,3,4 --max-new-tokens 4 2>&1 |
  grep -E "gemv1|Duration|DRAM Throughput|Memory Throughput|Registers|Grid Size|Dynamic Shared|Achieved Occupancy|Theoretical Occupancy|Block Limit|Issued Warp|No Eligible|Active Warps Per|Eligible Warps|Warp Cycles Per Issued|Stall|stall|cycles being stalled|Est\. (Local )?Speedup" | grep -v "^ *$" | cut -c1-160
date -u
