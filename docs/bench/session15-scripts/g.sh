# Session 15, call G: main + the RMSNorm-fused batch-1 bf16 GEMV and the batch-1 GPTQ kernel sending
# their next weights toward L2 (prefetch.global.L2) right after the PDL wait, while their prologue
# (x, Σx², normalized copy or fragments, barriers) issues no loads. Fixtures tiny-qwen2, tiny-qwen1.
# test_cuda_ops, the GPTQ suite and the CUDA model suite, then rows with this build and with the
# previous commit's CUDA backend and weights.gptq modules (920d267, .carry/old.tgz) first on
# KVRUN_PLUGIN_PATH, alternating.
set -uo pipefail
exec > >(tee ${OUT:-.}/session15-g.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/old.tgz -C /tmp/o
OUT=/tmp/gc LINES_PER_SUITE=6 timeout 200 scripts/gpu-check.sh test_cuda_ops test_plugin_weights_gptq test_model_cuda; echo "gpu-check rc=$?"
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2 3; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=/tmp/o/old row "bf16 int8 naive, 920d267 modules" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=/tmp/o/old row "gptq int8 naive, 920d267 modules" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
date -u
