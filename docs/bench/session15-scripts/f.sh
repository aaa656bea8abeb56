# Session 15, call F: main + the RMSNorm-fused batch-1 bf16 GEMV (q·k·v, gate·up) sending its norm
# weights' lines toward L1 before its PDL wait, so the loads of them after the wait skip an L2
# round trip. Fixtures tiny-qwen2 and tiny-qwen1. test_cuda_ops and the CUDA model suite, then
# bf16 batch-1 rows with this build and with the previous commit's CUDA backend module (8403fa6,
# carried as .carry/old-backend.tgz) first on KVRUN_PLUGIN_PATH, alternating.
set -uo pipefail
exec > >(tee ${OUT:-.}/session15-f.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/old && tar -xzf .carry/old-backend.tgz -C /tmp/old
OUT=/tmp/gc LINES_PER_SUITE=10 timeout 200 scripts/gpu-check.sh test_cuda_ops test_model_cuda; echo "gpu-check rc=$?"
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2 3; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=/tmp/old/old-backend row "bf16 int8 naive, 8403fa6 backend" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
