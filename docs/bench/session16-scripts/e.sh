# Session 16, call E: the decode kernel loads its first round before the PDL wait only with the
# int8 cache or with blocks of 4 or 16 warps (kEarly); fp16/bf16 with one-warp blocks (large
# batches) wait first, as before session 16, after call D found batch 64 with flash + fp16 slower
# with the early round (not the L1 bypass, not the caches). The round loop loads at its top again.
# Suites of the decode kernel (1, 4 and automatic warps), flash's, the CUDA model suite; rows of this
# build against 74e533d's modules (base) and f8f3d16's attention modules (head), alternating.
set -uo pipefail
exec > >(tee ${OUT:-.}/session16-e.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/old.tgz -C /tmp/o
O=/tmp/o/old
OUT=/tmp/gc LINES_PER_SUITE=8 timeout 300 scripts/gpu-check.sh test_plugin_attention_naive \
  KVRUN_NAIVE_DECODE_WARPS=1:test_plugin_attention_naive KVRUN_NAIVE_DECODE_WARPS=4:test_plugin_attention_naive \
  test_plugin_attention_flash test_model_cuda
echo "gpu-check rc=$?"
row_header
for r in 1 2; do
  row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B64
  KVRUN_PLUGIN_PATH=$O/base row "bf16 fp16 flash, 74e533d modules" -c $C/qwen7b-bf16-fp16-flash.toml $B64
  KVRUN_PLUGIN_PATH=$O/head row "bf16 fp16 flash, f8f3d16 attention" -c $C/qwen7b-bf16-fp16-flash.toml $B64
done
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B64
KVRUN_PLUGIN_PATH=$O/base row "bf16 int8 naive, 74e533d modules" -c $C/qwen7b-bf16-int8-naive.toml $B64
KVRUN_PLUGIN_PATH=$O/head row "bf16 int8 naive, f8f3d16 attention" -c $C/qwen7b-bf16-int8-naive.toml $B64
for r in 1 2; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=$O/base row "bf16 int8 naive, 74e533d modules" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=$O/head row "bf16 int8 naive, f8f3d16 attention" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B1
KVRUN_PLUGIN_PATH=$O/base row "bf16 fp16 flash, 74e533d modules" -c $C/qwen7b-bf16-fp16-flash.toml $B1
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
