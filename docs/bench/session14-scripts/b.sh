# Session 14, call B: attention.flash's decode steps on the fused decode kernel it now shares with
# attention.naive (plugins/common/paged_decode.cu), against its own tensor-core tiles
# (KVRUN_FLASH_DECODE=0), on top of call A's bf16 attention output. Fixtures tiny-qwen2 and
# tiny-qwen1. The attention suites (flash also with KVRUN_FLASH_DECODE=0), the CUDA model suite,
# memcheck of the flash suite's MHA cases; then bench rows A/B in one call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session14-b.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=14 timeout 300 scripts/gpu-check.sh test_plugin_attention_naive test_plugin_attention_flash KVRUN_FLASH_DECODE=0:test_plugin_attention_flash test_model_cuda; echo "gpu-check rc=$?"
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_flash -tc='*MHA 1:1*' > /tmp/s.log 2>&1; echo "memcheck flash rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
printf '[model]\nsynthetic = "qwen2.5-7b"\nsynthetic_weights = "bf16"\n[backend]\ndevice = "cuda"\nmemory_limit = "80GB"\n[cache]\ntype = "fp16"\n[attention]\nkind = "flash"\n' > /tmp/q25f.toml
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
for f in 0 1; do
  KVRUN_FLASH_DECODE=$f row "qwen-7b bf16 fp16 flash flash_decode=$f" -c $C/qwen7b-bf16-fp16-flash.toml $B1
  KVRUN_FLASH_DECODE=$f row "qwen-7b bf16 fp16 flash flash_decode=$f" -c $C/qwen7b-bf16-fp16-flash.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_FLASH_DECODE=$f row "qwen-7b bf16 fp16 flash 8192 ctx flash_decode=$f" -c $C/qwen7b-bf16-fp16-flash.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
  KVRUN_FLASH_DECODE=$f row "qwen2.5-7b bf16 fp16 flash flash_decode=$f" -c /tmp/q25f.toml --batch 1,16 --prompt-tokens 32 --new-tokens 256
done
row "qwen-7b gptq fp16 flash" -c $C/qwen7b-gptq-fp16-flash.toml $B1
row "qwen-7b bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
row "qwen-7b bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
date -u
