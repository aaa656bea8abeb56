# Session 13, call C: Cache::append_qkv (RoPE and the q | k | v split done by the cache's append
# kernel) on top of call A's build. Fixtures tiny-qwen2 and tiny-qwen1. The cache suite (CUDA vs
# CPU bit for bit, append_qkv cases) plain and under memcheck and racecheck, the CUDA model suite,
# then bench rows A/B in one call: KVRUN_APPEND_QKV=0 (rope_apply / split_rope + append) vs 1.
set -uo pipefail
exec > >(tee ${OUT:-.}/session13-c.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=14 timeout 240 scripts/gpu-check.sh test_plugin_cache_fp16 test_model_cuda; echo "gpu-check rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_cache_fp16 > /tmp/s.log 2>&1; echo "memcheck cache rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 $b/test_plugin_cache_fp16 -tc='append_qkv*' > /tmp/r.log 2>&1; echo "racecheck cache rc=$? $(grep 'ERROR SUMMARY' /tmp/r.log|tail -1)"
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
printf '[model]\nsynthetic = "qwen2.5-7b"\nsynthetic_weights = "bf16"\n[backend]\ndevice = "cuda"\nmemory_limit = "80GB"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' > /tmp/q25.toml
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  for a in 0 1; do
    KVRUN_APPEND_QKV=$a row "qwen-7b bf16 int8 naive b1 append_qkv=$a" -c $C/qwen7b-bf16-int8-naive.toml $B1
    KVRUN_APPEND_QKV=$a row "qwen-7b gptq int8 naive b1 append_qkv=$a" -c $C/qwen7b-gptq-int8-naive.toml $B1
  done
done
for a in 0 1; do
  KVRUN_APPEND_QKV=$a row "qwen-7b bf16 fp16 flash b1 append_qkv=$a" -c $C/qwen7b-bf16-fp16-flash.toml $B1
  KVRUN_APPEND_QKV=$a row "qwen2.5-7b bf16 int8 naive b1 append_qkv=$a" -c /tmp/q25.toml $B1
done
for r in 1 2; do
  for a in 0 1; do
    KVRUN_APPEND_QKV=$a row "qwen-7b bf16 int8 naive b64 append_qkv=$a" -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  done
done
KVRUN_APPEND_QKV=1 row "qwen-7b bf16 fp16 flash b64 append_qkv=1" -c $C/qwen7b-bf16-fp16-flash.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
KVRUN_APPEND_QKV=0 row "qwen-7b bf16 fp16 flash b64 append_qkv=0" -c $C/qwen7b-bf16-fp16-flash.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
date -u
