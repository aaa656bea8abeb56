# Session 15, call D (final): main with the batch-1 GPTQ kernel reading bias and y early. Fixtures
# tiny-qwen2 and tiny-qwen1. Every GPU suite (scripts/gpu-check.sh's default list), memcheck of the
# GPTQ suite, then the rows; the GPTQ rows also with the previous commit's weights.gptq module
# (d0b7524, built from that commit's gptq_cuda.cu, carried as .carry/old-gptq.tgz) first on
# KVRUN_PLUGIN_PATH, alternating in one call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session15-d.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/old && tar -xzf .carry/old-gptq.tgz -C /tmp/old
OUT=/tmp/gc LINES_PER_SUITE=10 timeout 330 scripts/gpu-check.sh; echo "gpu-check rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
B64="--batch 64 --prompt-tokens 32 --new-tokens 1024"
for r in 1 2 3; do
  row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=/tmp/old/old-gptq row "gptq int8 naive, d0b7524 module" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
for r in 1 2; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B64
done
row "gptq fp16 flash" -c $C/qwen7b-gptq-fp16-flash.toml $B1
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B64
date -u
