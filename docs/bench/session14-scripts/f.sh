# Session 14, call F (final): main with the bf16 attention output (ABI 5) and flash's decode steps
# on the shared decode kernel; the skinny GEMM reverted. Fixtures tiny-qwen2 and tiny-qwen1. Every
# GPU suite (scripts/gpu-check.sh's default list), then the PERFORMANCE.md rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session14-f.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=10 timeout 300 scripts/gpu-check.sh; echo "gpu-check rc=$?"
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
B64="--batch 64 --prompt-tokens 32 --new-tokens 1024"
for r in 1 2; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B64
done
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B1
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B64
row "bf16 fp16 flash 8192 ctx" -c $C/qwen7b-bf16-fp16-flash.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
row "gptq fp16 flash" -c $C/qwen7b-gptq-fp16-flash.toml $B1
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml --batch 16,32,100 --prompt-tokens 32 --new-tokens 512
date -u
