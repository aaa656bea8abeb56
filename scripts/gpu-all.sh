#!/usr/bin/env bash
# One full GPU pass (through scripts/gpu-run.sh): device facts, the GPU suites, memcheck, the
# full-text perplexity of the carried fixtures on CUDA, and batch-1 decode of the Qwen-7B shape.
set -uo pipefail
out=${OUT:-gpu-logs}
mkdir -p "$out"
k=build-cuda/apps/kvrun
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
scripts/gpu-check.sh ${SUITES:-}
timeout ${SANITIZE_SECONDS:-420} scripts/gpu-sanitize.sh ${SANITIZE:-test_cuda_ops test_plugin_cache_fp16 test_plugin_attention_naive}
for m in $(ls "$KVRUN_FIXTURES"); do
  for pipe in ${PIPES:-fp16:naive fp16:flash int8:naive}; do
    c=${pipe%%:*}; a=${pipe##*:}
    cat > /tmp/p.toml <<EOT
[model]
path = "$KVRUN_FIXTURES/$m"
[backend]
device = "cuda"
[cache]
type = "$c"
[attention]
kind = "$a"
EOT
    $k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" --json > "$out/ppl-$m-$c-$a.json" 2> "$out/ppl-$m-$c-$a.err"
    echo "ppl $m $c/$a rc=$? $(python3 -c "import json;j=json.load(open('$out/ppl-$m-$c-$a.json'));print(round(j['ppl'],5), j['windows'], round(j['seconds'],2),'s')" 2>/dev/null || tail -2 "$out/ppl-$m-$c-$a.err")"
  done
done
for g in true false; do
  printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = %s\n[attention]\nkind = "%s"\n' $g "${ATTN7B:-flash}" > /tmp/s.toml
  $k generate -c /tmp/s.toml --prompt-ids $(seq -s, 1 32) --max-new-tokens ${NEW7B:-256} --json > "$out/q7b-graphs-$g.json" 2> "$out/q7b-graphs-$g.err"
  echo "qwen-7b bf16 batch 1 graphs=$g rc=$? $(python3 -c "import json;s=json.load(open('$out/q7b-graphs-$g.json'))['stats'];print('ms/step', round(s['ms_per_step_median'],3), 'tok/s', round(s['tokens_per_second'],1), 'mem', s['memory'])" 2>/dev/null || tail -3 "$out/q7b-graphs-$g.err")"
done
