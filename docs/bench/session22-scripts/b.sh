# Session 22, call B: gemv2_kernel's stage size (KVRUN_GPTQ_G2_U chunks per bulk copy) and ring depth
# (KVRUN_GPTQ_G2_STAGES) against gemv1 in one call; ncu (real clocks) of one layer's launches of each.
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-b.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|test cases" | head -10
KVRUN_GPTQ_G2_U=8 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|test cases" | head -10
row_header
for i in 1 2; do
  KVRUN_GPTQ_G2=0 row "g1" -c $C/qwen7b-gptq-int8-naive.toml $B1
  for u in 2 4 8; do KVRUN_GPTQ_G2_U=$u row "g2 U$u" -c $C/qwen7b-gptq-int8-naive.toml $B1; done
done
for st in 2 4 6; do KVRUN_GPTQ_G2_U=4 KVRUN_GPTQ_G2_STAGES=$st row "g2 U4 S$st" -c $C/qwen7b-gptq-int8-naive.toml $B1; done
for st in 2 3; do KVRUN_GPTQ_G2_U=8 KVRUN_GPTQ_G2_STAGES=$st row "g2 U8 S$st" -c $C/qwen7b-gptq-int8-naive.toml $B1; done
date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for u in 2 8; do
  KVRUN_GPTQ_G2_U=$u timeout 100 ncu --clock-control none --kernel-name regex:gemv2 --launch-skip 300 --launch-count 4 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
    $k bench -c /tmp/g.toml --batch 1 --prompt-tokens 32 --new-tokens 8 --warmup-tokens 0 > ${OUT:-.}/ncu-g2-u$u.txt 2>&1
  echo "== ncu g2 U$u"; grep -E "^  [a-z_]+.*gemv2|Duration|DRAM Throughput|Memory Throughput|Registers|Stall|Warp Cycles Per Issued|Grid Size|Dynamic Shared|Achieved Occ" ${OUT:-.}/ncu-g2-u$u.txt | head -60
done
KVRUN_GPTQ_G2=0 timeout 100 ncu --clock-control none --kernel-name regex:gemv1_mma --launch-skip 300 --launch-count 4 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
  $k bench -c /tmp/g.toml --batch 1 --prompt-tokens 32 --new-tokens 8 --warmup-tokens 0 > ${OUT:-.}/ncu-g1.txt 2>&1
echo "== ncu g1"; grep -E "Duration|DRAM Throughput|Memory Throughput|Registers|Warp Cycles Per Issued|Grid Size|Dynamic Shared|Achieved Occ" ${OUT:-.}/ncu-g1.txt | head -40
date -u
