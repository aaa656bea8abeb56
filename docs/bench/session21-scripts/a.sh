# Session 21, call A: session 20's last GPTQ code on the GPU (gemm_tc_kernel from 17 rows, per-Linear
# plan, per-row scaling, the new huge/tiny rows case), memcheck of the GPTQ suite, batches 16–64
# with the kernel on and off against bf16, and ncu of gemm_tc_kernel and the batch-1 GEMV.
set -uo pipefail
exec > >(tee ${OUT:-.}/session21-a.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u; nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 90 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases|ppl of|skipped" | head -30
timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -4
date -u
row_header
G="--batch 16,24,32,64 --prompt-tokens 32 --new-tokens 128"
row "gptq int8 tc on" -c $C/qwen7b-gptq-int8-naive.toml $G
KVRUN_GPTQ_TC_GEMM=0 row "gptq int8 tc off" -c $C/qwen7b-gptq-int8-naive.toml --batch 16,32,64 --prompt-tokens 32 --new-tokens 128
row "bf16 int8" -c $C/qwen7b-bf16-int8-naive.toml --batch 1,16,32,64 --prompt-tokens 32 --new-tokens 128
row "gptq int8 b1" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
OUT=${OUT:-.}/prof64 WEIGHTS=gptq BATCH=64 ATTN=naive CACHE=int8 SKIP=2500 COUNT=700 NEW=8 TOP=24 \
  timeout 200 bash scripts/gpu-profile.sh
date -u
# gemm_tc_kernel's limits: one batch-64 step's launches of it, full sections.
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
timeout 150 ncu --kernel-name regex:gemm_tc --launch-skip 130 --launch-count 4 --section SpeedOfLight --section Occupancy \
  --section WarpStateStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section LaunchStats \
  $k bench -c /tmp/g.toml --batch 64 --prompt-tokens 32 --new-tokens 4 --warmup-tokens 0 > ${OUT:-.}/ncu-tc.txt 2>&1
grep -E "Duration|Throughput|Pipe|Occupancy|Registers|Shared Memory Config|Block Limit|Stall|Warp Cycles|Grid Size|Block Size|Dynamic Shared" ${OUT:-.}/ncu-tc.txt | head -80
date -u
timeout 120 ncu --kernel-name regex:gemv1_mma --launch-skip 300 --launch-count 4 --section SpeedOfLight --section Occupancy \
  --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats \
  $k bench -c /tmp/g.toml --batch 1 --prompt-tokens 32 --new-tokens 8 --warmup-tokens 0 > ${OUT:-.}/ncu-g1.txt 2>&1
grep -E "Duration|Throughput|Occupancy|Registers|Stall|Warp Cycles|Grid Size|Dynamic Shared" ${OUT:-.}/ncu-g1.txt | head -60
date -u
