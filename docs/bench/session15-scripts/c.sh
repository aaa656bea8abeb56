# Session 15, call C: main + the batch-1 GPTQ kernel taking SwiGLU in (KVRUN_GPTQ_FUSE_SWIGLU) and
# both batch-1 GEMVs reading the written column's bias and old y before their main loop. Fixtures
# tiny-qwen2-gptq-int4 and -int8. Suites, memcheck, perplexity, rows; then tools/skinny_bench.cu
# (session 14's prepared study of the batch-64 matmul, built with the command in its header).
set -uo pipefail
exec > >(tee ${OUT:-.}/session15-c.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=14 timeout 300 scripts/gpu-check.sh test_cuda_ops test_plugin_weights_gptq
echo "gpu-check rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
for m in tiny-qwen2-gptq-int4 tiny-qwen2-gptq-int8; do
  printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/$m" > /tmp/p.toml
  for v in 1 0; do echo "ppl $m int8:naive swiglu-fused=$v: $(KVRUN_GPTQ_FUSE_SWIGLU=$v $k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"; done
  for v in 1 0; do echo "greedy $m swiglu-fused=$v: $(KVRUN_GPTQ_FUSE_SWIGLU=$v $k generate -c /tmp/p.toml --prompt 'def fib(n):' --max-new-tokens 32 2>/dev/null | md5sum)"; done
done
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  KVRUN_GPTQ_FUSE_SWIGLU=1 row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_GPTQ_FUSE_SWIGLU=0 row "gptq int8 naive, swiglu kernel" -c $C/qwen7b-gptq-int8-naive.toml $B1
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "gptq fp16 flash" -c $C/qwen7b-gptq-fp16-flash.toml $B1
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
timeout 240 .carry/skinny_bench
date -u
