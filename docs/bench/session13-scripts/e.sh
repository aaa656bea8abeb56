# Session 13, call E: final main, fixtures tiny-qwen2-gptq-int4 and -int8: the GPTQ suite (its
# fixture cases now run with append_qkv), the attention suites, test_cuda_ops, and perplexity.
set -uo pipefail
exec > >(tee ${OUT:-.}/session13-e.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=12 timeout 300 scripts/gpu-check.sh test_plugin_weights_gptq test_plugin_attention_naive test_plugin_attention_flash test_cuda_ops
echo "gpu-check rc=$?"
for m in tiny-qwen2-gptq-int4 tiny-qwen2-gptq-int8; do
  for pipe in int8:naive fp16:flash; do
    printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "%s"\n[attention]\nkind = "%s"\n' "$KVRUN_FIXTURES/$m" ${pipe%%:*} ${pipe##*:} > /tmp/p.toml
    echo "ppl $m $pipe: $($k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"
  done
done
date -u
