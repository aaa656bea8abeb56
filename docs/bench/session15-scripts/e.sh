# Session 15, call E: main + the bf16 GEMVs (gemv_kernel, gemv_ring_kernel) reading the written
# column's bias and old y before their main loop, as call D's GPTQ kernel does. Fixtures tiny-qwen2
# and tiny-qwen1. test_cuda_ops and the CUDA model suite, memcheck of the GEMV cases, then rows
# with this build and with the previous commit's CUDA backend module (9b6398d, built from that
# commit's matmul.cu, carried as .carry/old-backend.tgz) first on KVRUN_PLUGIN_PATH, alternating.
set -uo pipefail
exec > >(tee ${OUT:-.}/session15-e.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/old && tar -xzf .carry/old-backend.tgz -C /tmp/old
OUT=/tmp/gc LINES_PER_SUITE=10 timeout 200 scripts/gpu-check.sh test_cuda_ops test_model_cuda; echo "gpu-check rc=$?"
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_cuda_ops -tc='*matmul*,*GEMV*,*graph*' > /tmp/s.log 2>&1; echo "memcheck test_cuda_ops (matmul, GEMV, graph cases) rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2 3; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=/tmp/old/old-backend row "bf16 int8 naive, 9b6398d backend" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
KVRUN_PLUGIN_PATH=/tmp/old/old-backend row "gptq int8 naive, 9b6398d backend" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B1
date -u
