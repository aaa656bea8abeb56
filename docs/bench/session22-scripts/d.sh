# Session 22, call D: gemv2_kernel's ring filled by per-lane cp.async (KVRUN_GPTQ_G2_BULK=0, arrivals
# on the stage mbarrier when the copies land) against one bulk copy per stage, at several depths.
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-d.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
for bk in 0 1; do
  echo "suite bulk=$bk: $(KVRUN_GPTQ_G2_WARPS=16 KVRUN_GPTQ_G2_BULK=$bk timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|test cases" | head -5)"
done
timeout 240 compute-sanitizer --tool memcheck --print-limit 5 env KVRUN_GPTQ_G2_WARPS=16 KVRUN_GPTQ_G2_BULK=0 $b/test_plugin_weights_gptq -tc="CUDA Linear matches*" 2>&1 | tail -2
row_header
KVRUN_GPTQ_G2=0 row "g1" -c $C/qwen7b-gptq-int8-naive.toml $B1
for u in 2 4; do for st in 2 3 4 16; do for bk in 0 1; do
  KVRUN_GPTQ_G2_WARPS=16 KVRUN_GPTQ_G2_U=$u KVRUN_GPTQ_G2_STAGES=$st KVRUN_GPTQ_G2_BULK=$bk row "g2 W16 U$u S$st bulk$bk" -c $C/qwen7b-gptq-int8-naive.toml $B1
done; done; done
KVRUN_GPTQ_G2=0 row "g1" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
KVRUN_GPTQ_G2_WARPS=16 KVRUN_GPTQ_G2_U=2 KVRUN_GPTQ_G2_BULK=0 timeout 100 ncu --clock-control none --kernel-name regex:gemv2 --launch-skip 300 --launch-count 4 --section SpeedOfLight --section Occupancy --section WarpStateStats \
    $k bench -c /tmp/g.toml --batch 1 --prompt-tokens 32 --new-tokens 8 --warmup-tokens 0 > ${OUT:-.}/ncu-g2-async.txt 2>&1
echo "== ncu g2 W16 U2 async"; grep -E "Duration|DRAM Throughput|Warp Cycles Per Issued|Dynamic Shared|Achieved Occ" ${OUT:-.}/ncu-g2-async.txt | head -24
date -u
