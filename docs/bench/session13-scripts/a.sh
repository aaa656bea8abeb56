# Session 13, call A: q | k | v and gate | up joined at load (WeightFormat::load_joined_linear,
# plugin ABI 4). Fixtures tiny-qwen2 and tiny-qwen1 (the GPTQ ones go in call B: 64 MiB carry).
# CUDA model suite on both fixtures (now with joined Linears), the GPTQ CUDA Linear unit cases,
# then bench rows A/B in one call: KVRUN_JOIN_LINEARS=0 (what checkpoints loaded before) vs 1,
# on the synthetic Qwen2.5-7B shape (GQA, q/k/v bias) and on the tiny-qwen2 checkpoint itself.
set -uo pipefail
exec > >(tee ${OUT:-.}/session13-a.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
OUT=/tmp/gc LINES_PER_SUITE=14 timeout 240 scripts/gpu-check.sh test_model_cuda; echo "gpu-check rc=$?"
timeout 100 $b/test_plugin_weights_gptq -tc='CUDA Linear*' > /tmp/w.log 2>&1; echo "weights_gptq CUDA Linear rc=$? $(grep 'test cases' /tmp/w.log | tail -1)"
grep -E "worst" /tmp/w.log | head
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
mk() {  # mk NAME SYNTHETIC WEIGHTS CACHE ATTN
  printf '[model]\nsynthetic = "%s"\nsynthetic_weights = "%s"\n[backend]\ndevice = "cuda"\nmemory_limit = "80GB"\n[cache]\ntype = "%s"\n[attention]\nkind = "%s"\n' "$2" "$3" "$4" "$5" > /tmp/$1.toml
}
mk q25-bf16 qwen2.5-7b bf16 int8 naive
mk q25-gptq qwen2.5-7b gptq int8 naive
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2" > /tmp/tq2.toml
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
for r in 1 2; do
  for j in 0 1; do
    KVRUN_JOIN_LINEARS=$j row "qwen2.5-7b bf16 b1 join=$j" -c /tmp/q25-bf16.toml --batch 1 --prompt-tokens 32 --new-tokens 256
    KVRUN_JOIN_LINEARS=$j row "qwen2.5-7b gptq b1 join=$j" -c /tmp/q25-gptq.toml --batch 1 --prompt-tokens 32 --new-tokens 256
    KVRUN_JOIN_LINEARS=$j row "tiny-qwen2 b1 join=$j" -c /tmp/tq2.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  done
done
for j in 0 1; do
  KVRUN_JOIN_LINEARS=$j row "qwen2.5-7b bf16 b64 join=$j" -c /tmp/q25-bf16.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_JOIN_LINEARS=$j row "qwen-7b bf16 b64 join=$j" -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
row "qwen-7b bf16 b1" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
row "qwen-7b gptq b1" -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
KVRUN_JOIN_LINEARS=0 row "qwen-7b gptq b1 join=0" -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
for j in 0 1; do echo "generate tiny-qwen2 join=$j: $(KVRUN_JOIN_LINEARS=$j $k generate -c /tmp/tq2.toml --prompt 'def fibonacci(n):' --max-new-tokens 24 2>/dev/null | tr '\n' ' ' | head -c 300)"; done
date -u
