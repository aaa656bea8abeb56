# Session 14, call I: main after the review (attention.naive's CUDA Args extend paged_decode::Args;
# a flash-suite case for a refused bf16 prefill output). Fixtures tiny-qwen2 and tiny-qwen1. Both
# attention suites, the CUDA model suite, and the batch-1 / batch-64 rows once.
set -uo pipefail
exec > >(tee ${OUT:-.}/session14-i.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=6 timeout 200 scripts/gpu-check.sh test_plugin_attention_naive test_plugin_attention_flash KVRUN_FLASH_DECODE=0:test_plugin_attention_flash test_model_cuda; echo "gpu-check rc=$?"
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
date -u
