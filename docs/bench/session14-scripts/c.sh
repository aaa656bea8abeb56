# Session 14, call C: kvrun's skinny GEMM (backends/cuda/gemm_skinny.cu: bf16 weights and bf16 x,
# 9..64 rows, weights streamed straight into registers) for the batched decode matmuls instead of
# cuBLAS, on top of calls A and B. Fixtures tiny-qwen2 and tiny-qwen1. test_cuda_ops (skinny vs CPU
# and cuBLAS, split parts bitwise stable), the CUDA model suite and the GPTQ suite; memcheck and
# racecheck of the skinny case; then bench rows A/B in one call: KVRUN_CUDA_SKINNY=0 (cuBLAS) vs 1.
set -uo pipefail
exec > >(tee ${OUT:-.}/session14-c.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=12 timeout 240 scripts/gpu-check.sh test_cuda_ops test_model_cuda test_plugin_weights_gptq; echo "gpu-check rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_cuda_ops -tc='*skinny*' > /tmp/s.log 2>&1; echo "memcheck skinny rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1) $(grep 'test cases' /tmp/s.log|tail -1)"
timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 $b/test_cuda_ops -tc='*skinny*' > /tmp/r.log 2>&1; echo "racecheck skinny rc=$? $(grep 'ERROR SUMMARY' /tmp/r.log|tail -1) $(grep 'test cases' /tmp/r.log|tail -1)"
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
printf '[model]\nsynthetic = "qwen2.5-7b"\nsynthetic_weights = "bf16"\n[backend]\ndevice = "cuda"\nmemory_limit = "80GB"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' > /tmp/q25.toml
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B64="--batch 64 --prompt-tokens 32 --new-tokens 1024"
for r in 1 2; do
  for s in 0 1; do KVRUN_CUDA_SKINNY=$s row "qwen-7b bf16 int8 naive skinny=$s" -c $C/qwen7b-bf16-int8-naive.toml $B64; done
done
for s in 0 1; do
  KVRUN_CUDA_SKINNY=$s row "qwen-7b bf16 int8 naive skinny=$s" -c $C/qwen7b-bf16-int8-naive.toml --batch 16,32 --prompt-tokens 32 --new-tokens 256
  KVRUN_CUDA_SKINNY=$s row "qwen-7b bf16 fp16 flash skinny=$s" -c $C/qwen7b-bf16-fp16-flash.toml $B64
  KVRUN_CUDA_SKINNY=$s row "qwen2.5-7b bf16 int8 naive skinny=$s" -c /tmp/q25.toml --batch 64 --prompt-tokens 32 --new-tokens 512
done
date -u
