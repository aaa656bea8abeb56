# Session 24, call F: the review's refactor (the two 9..64-row kernels' code and entry copies in one
# helper each, gptq_tc.cuh; their SASS differs from call E's by a few prologue instructions) —
# the CUDA Linear cases three ways, memcheck, perplexity at 48-row prefills, rows against bf16.
set -uo pipefail
exec > >(tee ${OUT:-.}/session24-f.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
for e in "" KVRUN_GPTQ_WGMMA=0 KVRUN_GPTQ_WG_TILES=1; do echo "== CUDA Linear cases $e"; env $e timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | grep -E "ERROR|worst|test cases" | head -6; done
echo "== memcheck"; timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | tail -1
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for e in "" KVRUN_GPTQ_WGMMA=0; do echo "ppl window 48 $e: $(env $e $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 48 --max-windows 100 2>&1 | tail -1)"; done
row_header
G="--batch 16,32,48,64 --prompt-tokens 32 --new-tokens 128"
row "final" -c $C/qwen7b-gptq-int8-naive.toml $G
KVRUN_GPTQ_WGMMA=0 row "tc" -c $C/qwen7b-gptq-int8-naive.toml $G
row "final" -c $C/qwen7b-gptq-int8-naive.toml $G
row "bf16" -c $C/qwen7b-bf16-int8-naive.toml $G
date -u
