# Session 23, call E: call A's gemm_wg_kernel (chunk loop rolled, one warpgroup per column tile) from
# 33 rows, the rest of the session's host changes — suite, memcheck, tiny-qwen2-gptq-int4's perplexity
# with 48-token windows with each kernel, rows 32..64 against
# gemm_tc_kernel and bf16 in the same call, the batch-1 row.
set -uo pipefail
exec > >(tee ${OUT:-.}/session23-e.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "== default"; timeout 120 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases" | head -20
echo "== wg from 9 rows"; KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|worst|test cases" | head -10
echo "== memcheck, wg from 9 rows"; KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -2
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for w in 1 0; do echo "ppl window 48 (48-row prefills), KVRUN_GPTQ_WGMMA=$w: $(KVRUN_GPTQ_WGMMA=$w $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 48 --max-windows 100 2>&1 | tail -1)"; done
row_header
G="--batch 32,40,48,56,64 --prompt-tokens 32 --new-tokens 128"
for i in 1 2; do
  KVRUN_GPTQ_WGMMA=0 row "tc" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_GPTQ_WG_MIN_ROWS=9 row "wg" -c $C/qwen7b-gptq-int8-naive.toml $G
done
row "default" -c $C/qwen7b-gptq-int8-naive.toml --batch 1,16,32,64 --prompt-tokens 32 --new-tokens 128
row "bf16" -c $C/qwen7b-bf16-int8-naive.toml --batch 1,16,32,48,64 --prompt-tokens 32 --new-tokens 128
date -u
# The issue-6/7 rows on this machine (no code of theirs changed this session).
row "bf16 B1" -c $C/qwen7b-bf16-int8-naive.toml $B1
row "bf16 B64" -c $C/qwen7b-bf16-int8-naive.toml $B64
row "gptq B1" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
