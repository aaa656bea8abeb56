# Session 15, call H: main + the streamed weights of the batch-1 GEMVs (bf16 gemv_kernel's loads,
# gemv_ring_kernel's and the GPTQ kernel's cp.async ring) tagged evict-first in L2
# (createpolicy.fractional.L2::evict_first + .L2::cache_hint), so that the small data the step's
# next kernels read back stays in L2. Fixtures tiny-qwen2, tiny-qwen1. The GPTQ suite, the CUDA
# model suite and test_cuda_ops' matmul cases, then rows with this build and with the previous
# commit's CUDA backend and weights.gptq modules (0209030, .carry/old.tgz) first on
# KVRUN_PLUGIN_PATH, alternating. (The last ~300 s of the session's device time: short.)
set -uo pipefail
exec > >(tee ${OUT:-.}/session15-h.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/old.tgz -C /tmp/o
OUT=/tmp/gc LINES_PER_SUITE=4 timeout 60 scripts/gpu-check.sh test_plugin_weights_gptq test_model_cuda; echo "gpu-check rc=$?"
timeout 40 $b/test_cuda_ops -tc='*matmul*,*GEMV*' 2>&1 | tail -2
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=/tmp/o/old row "bf16 int8 naive, 0209030 modules" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=/tmp/o/old row "gptq int8 naive, 0209030 modules" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
KVRUN_PLUGIN_PATH=/tmp/o/old row "bf16 int8 naive, 0209030 modules" -c $C/qwen7b-bf16-int8-naive.toml $B1
date -u
