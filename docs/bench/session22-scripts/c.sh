# Session 22, call C: gemv2_kernel with a fast path (a stage inside one tile: independent mma chains)
# and 16 or 32 warps (KVRUN_GPTQ_G2_WARPS), stage sizes and ring depths, against gemv1; ncu (real
# clocks) of one layer's launches.
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-c.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
for w in 16 32; do for u in 2 4; do
  echo "suite W$w U$u: $(KVRUN_GPTQ_G2_WARPS=$w KVRUN_GPTQ_G2_U=$u timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|test cases" | head -5)"
done; done
row_header
for i in 1 2; do
  KVRUN_GPTQ_G2=0 row "g1" -c $C/qwen7b-gptq-int8-naive.toml $B1
  for w in 16 32; do for u in 2 4; do KVRUN_GPTQ_G2_WARPS=$w KVRUN_GPTQ_G2_U=$u row "g2 W$w U$u" -c $C/qwen7b-gptq-int8-naive.toml $B1; done; done
done
for st in 2 3 4; do KVRUN_GPTQ_G2_WARPS=32 KVRUN_GPTQ_G2_U=2 KVRUN_GPTQ_G2_STAGES=$st row "g2 W32 U2 S$st" -c $C/qwen7b-gptq-int8-naive.toml $B1; done
for st in 2 3; do KVRUN_GPTQ_G2_WARPS=16 KVRUN_GPTQ_G2_U=4 KVRUN_GPTQ_G2_STAGES=$st row "g2 W16 U4 S$st" -c $C/qwen7b-gptq-int8-naive.toml $B1; done
date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for cfg in "32 2" "16 4"; do set -- $cfg
  KVRUN_GPTQ_G2_WARPS=$1 KVRUN_GPTQ_G2_U=$2 timeout 100 ncu --clock-control none --kernel-name regex:gemv2 --launch-skip 300 --launch-count 4 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
    $k bench -c /tmp/g.toml --batch 1 --prompt-tokens 32 --new-tokens 8 --warmup-tokens 0 > ${OUT:-.}/ncu-g2-w$1u$2.txt 2>&1
  echo "== ncu g2 W$1 U$2"; grep -E "Duration|DRAM Throughput|Warp Cycles Per Issued|Dynamic Shared|Achieved Occ" ${OUT:-.}/ncu-g2-w$1u$2.txt | head -24
done
date -u
