# Session 24, call A: gemm_wg_kernel with two column tiles per warp (KVRUN_GPTQ_WG_TILES=2: 256
# weight columns a block, each x stage and each chunk's overhead shared by twice the weights)
# against one (session 23's) and gemm_tc_kernel — suite, negative control, memcheck, rows 16..64,
# ncu stall reasons of both forms at 64 rows; the issue rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session24-a.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "== default"; timeout 200 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases" | head -20
for tw in 2 1; do echo "== wg from 9 rows, tiles $tw"; KVRUN_GPTQ_WG_TILES=$tw KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | grep -E "ERROR|worst|test cases" | head -10; done
echo "== swapped descriptor, tiles 2 (must fail)"; KVRUN_GPTQ_WG_SWAP_DESC=1 KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | grep -E "test cases" | head -3
echo "== memcheck, wg from 9 rows, tiles 2"; KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | tail -2
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for tw in 2 1; do echo "ppl window 48, tiles $tw: $(KVRUN_GPTQ_WG_TILES=$tw $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 48 --max-windows 100 2>&1 | tail -1)"; done
date -u
row_header
G="--batch 16,24,32,40,48,56,64 --prompt-tokens 32 --new-tokens 128"
for i in 1 2; do
  KVRUN_GPTQ_WGMMA=0 row "tc" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_GPTQ_WG_TILES=1 KVRUN_GPTQ_WG_MIN_ROWS=9 row "wg1" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_GPTQ_WG_TILES=2 KVRUN_GPTQ_WG_MIN_ROWS=9 row "wg2" -c $C/qwen7b-gptq-int8-naive.toml $G
done
row "bf16" -c $C/qwen7b-bf16-int8-naive.toml --batch 1,16,32,64 --prompt-tokens 32 --new-tokens 128
date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for tw in 1 2; do
  echo "== ncu gemm_wg_kernel, 64 rows, tiles $tw"
  KVRUN_GPTQ_WG_TILES=$tw timeout 150 ncu --clock-control none --kernel-name regex:gemm_wg --launch-skip 128 --launch-count 4 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio,smsp__inst_executed.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active \
    $k bench -c /tmp/g.toml --batch 64 --prompt-tokens 32 --new-tokens 4 --warmup-tokens 0 > ${OUT:-.}/ncu-wg$tw.txt 2>&1
  grep -E "gemm_wg_kernel<|Duration|DRAM Throughput|Registers|Achieved Occupancy|Warp Cycles Per Issued|inst_executed.sum|hmma|stalled_(barrier|long_scoreboard|short_scoreboard|wait|math_pipe|mio|lg_throttle|no_instruction|dispatch|not_selected|selected|membar|sleeping|branch|drain|tex|misc|imc)" ${OUT:-.}/ncu-wg$tw.txt | sed 's/(const uint4.*//' | head -120
done
date -u
row "bf16 B1" -c $C/qwen7b-bf16-int8-naive.toml $B1
row "bf16 B64" -c $C/qwen7b-bf16-int8-naive.toml $B64
row "gptq B1" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
