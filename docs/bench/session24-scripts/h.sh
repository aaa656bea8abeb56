# Session 24, call H: the final code (tc_xfrag_kernel with 512 threads) — the GPTQ suite with each
# 9..64-row kernel, memcheck, perplexity at 48-row prefills, rows against bf16.
set -uo pipefail
exec > >(tee ${OUT:-.}/session24-h.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
for e in "" KVRUN_GPTQ_WGMMA=0 KVRUN_GPTQ_WG_TILES=1; do echo "== suite $e"; env $e timeout 150 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|worst|test cases" | head -6; done
echo "== memcheck"; timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | tail -1
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for e in "" KVRUN_GPTQ_WGMMA=0; do echo "ppl window 48 $e: $(env $e $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 48 --max-windows 100 2>&1 | tail -1)"; done
row_header
row "final" -c $C/qwen7b-gptq-int8-naive.toml --batch 16,32,48,56,64 --prompt-tokens 32 --new-tokens 128
row "bf16" -c $C/qwen7b-bf16-int8-naive.toml --batch 16,32,48,56,64 --prompt-tokens 32 --new-tokens 128
row "final 256" -c $C/qwen7b-gptq-int8-naive.toml --batch 1,16,64 --prompt-tokens 32 --new-tokens 256
date -u
