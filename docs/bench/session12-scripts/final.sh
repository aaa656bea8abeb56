# Session 12, final: main at the end of the session (lean batch-1 GPTQ GEMV + trigger at start),
# fixtures tiny-qwen2-gptq-int4 and -int8. Every GPU suite (scripts/gpu-check.sh default list; the
# model suite runs the carried fixtures), memcheck of the GPTQ suite, perplexity, the bench rows of
# PERFORMANCE.md's session-12 table; .carry/xr8 = branch gptq-xr8 (8 float4 of x per round) A/B.
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-final.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
OUT=/tmp/gc LINES_PER_SUITE=12 timeout 300 scripts/gpu-check.sh; echo "gpu-check rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
for m in tiny-qwen2-gptq-int4 tiny-qwen2-gptq-int8; do
  for pipe in int8:naive fp16:flash; do
    printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "%s"\n[attention]\nkind = "%s"\n' "$KVRUN_FIXTURES/$m" ${pipe%%:*} ${pipe##*:} > /tmp/p.toml
    echo "ppl $m $pipe: $($k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"
  done
done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
for r in 1 2; do
  row gptq-int8-naive-b1 $G
  KVRUN_GPTQ_G1_TRIGGER=0 row gptq-int8-naive-b1-trigger0 $G
  KVRUN_PLUGIN_PATH=$PWD/.carry/xr8 row gptq-int8-naive-b1-xr8 $G
  row bf16-int8-naive-b1 -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done
row gptq-fp16-flash-b1 -c $C/qwen7b-gptq-fp16-flash.toml --batch 1 --prompt-tokens 32 --new-tokens 256
row bf16-fp16-flash-b1 -c $C/qwen7b-bf16-fp16-flash.toml --batch 1 --prompt-tokens 32 --new-tokens 256
row gptq-int8-naive-b16 -c $C/qwen7b-gptq-int8-naive.toml --batch 16 --prompt-tokens 32 --new-tokens 128
row bf16-int8-naive-b64 -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
date -u
