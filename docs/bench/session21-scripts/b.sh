# Session 21, call B: gemm_tc_kernel with two column tiles per warp (KVRUN_GPTQ_TC_TILES=2, the
# new default) against one (session 20's), the x-fragment kernel holding its row in registers, the
# reduce kernel's loads at once, k parts by tc_parts, the norm and += fused at 17..64 rows; suites with
# both tile counts, memcheck.
set -uo pipefail
exec > >(tee ${OUT:-.}/session21-b.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
for tw in 2 1; do
  echo "== KVRUN_GPTQ_TC_TILES=$tw"
  KVRUN_GPTQ_TC_TILES=$tw timeout 90 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases|skipped" | head -20
done
# End to end through the model: windows of 48 predictions are 49-row steps, gemm_tc_kernel with the
# norm and += fused (tiny-qwen2-gptq-int4), against the kernel off and the fusion off.
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for e in "" KVRUN_GPTQ_FUSE=0 KVRUN_GPTQ_TC_TILES=1 KVRUN_GPTQ_TC_GEMM=0; do
  echo "ppl window 48 ${e:-default}: $(env $e $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 48 --max-windows 300 2>&1 | tail -1)"
done
timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -3
date -u
row_header
G="--batch 16,24,32,48,64 --prompt-tokens 32 --new-tokens 128"
row "gptq tiles 2 (fused)" -c $C/qwen7b-gptq-int8-naive.toml $G
KVRUN_GPTQ_TC_TILES=1 row "gptq tiles 1 (fused)" -c $C/qwen7b-gptq-int8-naive.toml $G
KVRUN_GPTQ_FUSE=0 row "gptq tiles 2, no fusion" -c $C/qwen7b-gptq-int8-naive.toml --batch 32,64 --prompt-tokens 32 --new-tokens 128
row "bf16 int8" -c $C/qwen7b-bf16-int8-naive.toml --batch 32,64 --prompt-tokens 32 --new-tokens 128
date -u
OUT=${OUT:-.}/prof64 WEIGHTS=gptq BATCH=64 ATTN=naive CACHE=int8 SKIP=2500 COUNT=700 NEW=8 TOP=16 \
  timeout 200 bash scripts/gpu-profile.sh
date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
timeout 150 ncu --clock-control none --kernel-name regex:gemm_tc --launch-skip 130 --launch-count 4 --section SpeedOfLight --section Occupancy \
  --section WarpStateStats --section ComputeWorkloadAnalysis --section LaunchStats \
  $k bench -c /tmp/g.toml --batch 64 --prompt-tokens 32 --new-tokens 4 --warmup-tokens 0 > ${OUT:-.}/ncu-tc.txt 2>&1
grep -E "gemm_tc_kernel|Duration|Elapsed Cycles|L1/TEX Cache|Compute \(SM\)|Issue Slots|Achieved Occupancy|Registers Per|Grid Size|Warp Cycles Per Issued" ${OUT:-.}/ncu-tc.txt | head -60
date -u
