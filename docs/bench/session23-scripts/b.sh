# Session 23, call B: where the batch-64 GPTQ step goes with gemm_wg_kernel and with gemm_tc_kernel
# (scripts/gpu-profile.sh, one decode step's kernels), ncu sections of gemm_wg_kernel's four
# Linears, and the k-part cap (KVRUN_GPTQ_TC_MAX_PARTS) at 64 rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session23-b.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
row_header
G="--batch 32,64 --prompt-tokens 32 --new-tokens 128"
row "wg" -c $C/qwen7b-gptq-int8-naive.toml $G
for p in 1 2 4; do KVRUN_GPTQ_TC_MAX_PARTS=$p row "wg parts<=$p" -c $C/qwen7b-gptq-int8-naive.toml $G; done
KVRUN_GPTQ_WGMMA=0 KVRUN_GPTQ_TC_MAX_PARTS=2 row "tc parts<=2" -c $C/qwen7b-gptq-int8-naive.toml $G
for w in 1 0; do
  echo "== profile, KVRUN_GPTQ_WGMMA=$w"
  KVRUN_GPTQ_WGMMA=$w OUT=/tmp/prof$w WEIGHTS=gptq BATCH=64 ATTN=naive CACHE=int8 SKIP=2500 COUNT=700 NEW=8 TOP=14 \
    timeout 200 bash scripts/gpu-profile.sh
done
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
timeout 150 ncu --clock-control none --kernel-name regex:gemm_wg --launch-skip 128 --launch-count 4 --section SpeedOfLight --section Occupancy \
  --section WarpStateStats --section ComputeWorkloadAnalysis --section LaunchStats \
  $k bench -c /tmp/g.toml --batch 64 --prompt-tokens 32 --new-tokens 4 --warmup-tokens 0 > ${OUT:-.}/ncu-wg.txt 2>&1
grep -E "Duration|Throughput|Pipe|Occupancy|Registers|Block Limit|Stall|Warp Cycles|Grid Size|Dynamic Shared|Issue" ${OUT:-.}/ncu-wg.txt | head -90
date -u
