# Session 13, call D: main after the review of append_qkv (shared launch/slot helpers) and the
# logn factors folded into it (q_scale). Fixtures tiny-qwen2, tiny-qwen1 (Qwen v1: use_logn_attn).
# The cache suite plain and under memcheck, the CUDA model suite, then rows: tiny-qwen1 with and
# without append_qkv (its logn scale_rows kernel), and the qwen-7b rows of PERFORMANCE.md.
set -uo pipefail
exec > >(tee ${OUT:-.}/session13-d.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=14 timeout 240 scripts/gpu-check.sh test_plugin_cache_fp16 test_model_cuda; echo "gpu-check rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_cache_fp16 > /tmp/s.log 2>&1; echo "memcheck cache rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen1" > /tmp/tq1.toml
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  for a in 0 1; do KVRUN_APPEND_QKV=$a row "tiny-qwen1 b1 append_qkv=$a" -c /tmp/tq1.toml $B1; done
done
for r in 1 2; do
  row "qwen-7b bf16 int8 naive b1" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "qwen-7b gptq int8 naive b1" -c $C/qwen7b-gptq-int8-naive.toml $B1
  row "qwen-7b bf16 int8 naive b64" -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
row "qwen-7b gptq fp16 flash b1" -c $C/qwen7b-gptq-fp16-flash.toml $B1
row "qwen-7b bf16 fp16 flash b1" -c $C/qwen7b-bf16-fp16-flash.toml $B1
date -u
