# Session 14, call A: the attention's output handed to the o projection as bf16 (ABI 5:
# Attention::writes_bf16, Linear::reads_bf16, Ops::matmul_reads_bf16). Fixtures tiny-qwen2 and
# tiny-qwen1. The naive attention suite (bf16 output bit for bit = the f32 output rounded, split
# parts too), test_cuda_ops (matmul_fused with x in bf16 == x in f32, bitwise) and the CUDA model
# suite (batch-16 greedy tokens with KVRUN_ATTN_BF16=0 and 1 the same), memcheck of the naive
# suite; then bench rows A/B in one call: KVRUN_ATTN_BF16=0 (f32 output + conversion kernel) vs 1.
set -uo pipefail
exec > >(tee ${OUT:-.}/session14-a.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=14 timeout 300 scripts/gpu-check.sh test_plugin_attention_naive test_cuda_ops test_model_cuda; echo "gpu-check rc=$?"
timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive -tc='*MHA 1:1*,*Qwen-7B heads*,*mixed steps*' > /tmp/s.log 2>&1; echo "memcheck naive rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B64="--batch 64 --prompt-tokens 32 --new-tokens 1024"
for r in 1 2 3; do
  for a in 0 1; do KVRUN_ATTN_BF16=$a row "qwen-7b bf16 int8 naive b64 attn_bf16=$a" -c $C/qwen7b-bf16-int8-naive.toml $B64; done
done
for a in 0 1; do
  KVRUN_ATTN_BF16=$a row "qwen-7b bf16 int8 naive b16/32/100 attn_bf16=$a" -c $C/qwen7b-bf16-int8-naive.toml --batch 16,32,100 --prompt-tokens 32 --new-tokens 512
  KVRUN_ATTN_BF16=$a row "qwen-7b bf16 fp16 naive b64 attn_bf16=$a" -c $C/qwen7b-bf16-int8-naive.toml --set cache.type=fp16 $B64
done
KVRUN_NAIVE_DECODE_SPLITS=2 row "qwen-7b bf16 int8 naive b64 splits=2" -c $C/qwen7b-bf16-int8-naive.toml $B64
row "qwen-7b bf16 int8 naive b1" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
date -u
