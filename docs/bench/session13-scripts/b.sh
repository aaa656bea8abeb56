# Session 13, call B: same build as call A, fixtures tiny-qwen2-gptq-int4 and -int8: every GPU
# suite (the model suite's tiny-qwen2/qwen1 ran in call A), memcheck of the GPTQ suite, perplexity.
set -uo pipefail
exec > >(tee ${OUT:-.}/session13-b.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=12 timeout 300 scripts/gpu-check.sh test_cuda_ops test_plugin_cache_fp16 test_plugin_cache_int8 \
  test_plugin_attention_naive test_plugin_attention_flash test_plugin_weights_gptq KVRUN_NAIVE_DECODE_WARPS=1:test_plugin_attention_naive
echo "gpu-check rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
for m in tiny-qwen2-gptq-int4 tiny-qwen2-gptq-int8; do
  for pipe in int8:naive fp16:flash; do
    printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "%s"\n[attention]\nkind = "%s"\n' "$KVRUN_FIXTURES/$m" ${pipe%%:*} ${pipe##*:} > /tmp/p.toml
    for j in 0 1; do echo "ppl $m $pipe join=$j: $(KVRUN_JOIN_LINEARS=$j $k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"; done
  done
done
date -u
