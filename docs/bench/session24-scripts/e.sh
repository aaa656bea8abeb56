# Session 24, call E: the final code — tiles per warp chosen per Linear (KVRUN_GPTQ_WG_TILES=0)
# against two and one forced, rows 16..64; the issue rows; the GPTQ rows of the Commands list; then
# scripts/gpu-all.sh with the two GPTQ fixtures (every GPU suite — the GPTQ one three ways —, memcheck
# of the GPTQ suite, perplexity of the carried fixtures on CUDA, Qwen-7B batch-1 decode).
set -uo pipefail
exec > >(tee ${OUT:-.}/session24-e.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
row_header
G="--batch 16,32,48,56,64 --prompt-tokens 32 --new-tokens 128"
for i in 1 2; do
  row "auto" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_GPTQ_WG_TILES=2 row "two" -c $C/qwen7b-gptq-int8-naive.toml $G
done
KVRUN_GPTQ_WG_TILES=1 row "one" -c $C/qwen7b-gptq-int8-naive.toml $G
row "bf16" -c $C/qwen7b-bf16-int8-naive.toml $G
date -u
row "bf16 B1" -c $C/qwen7b-bf16-int8-naive.toml $B1
row "bf16 B64" -c $C/qwen7b-bf16-int8-naive.toml $B64
row "gptq B1" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml --batch 1,16,64 --prompt-tokens 32 --new-tokens 256
row "gptq fp16 flash" -c $C/qwen7b-gptq-fp16-flash.toml --batch 1,16,64 --prompt-tokens 32 --new-tokens 256
date -u
SANITIZE="test_plugin_weights_gptq" SANITIZE_SECONDS=240 LINES_PER_SUITE=12 OUT=${OUT:-.}/gpu-all timeout 330 bash scripts/gpu-all.sh
date -u
