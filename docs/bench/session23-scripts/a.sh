# Session 23, call A: gemm_wg_kernel (Hopper wgmma, gptq_wg.cu) for 9..64 GPTQ rows — the GPTQ
# suite with it (default), with its descriptor's offsets swapped (must fail: proof the layout is
# the one read) and with gemm_tc_kernel (KVRUN_GPTQ_WGMMA=0); memcheck of the CUDA cases; then the
# Qwen-7B GPTQ rows at 16 / 32 / 64 with each kernel in the same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session23-a.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
echo "== wg (default)"; timeout 120 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases|M=" | head -24
echo "== wg, descriptor swapped"; KVRUN_GPTQ_WG_SWAP_DESC=1 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear matches*" 2>&1 | grep -E "worst|test cases" | head -4
echo "== tc"; KVRUN_GPTQ_WGMMA=0 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|worst|test cases" | head -8
echo "== memcheck"; timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -2
row_header
for i in 1 2; do
  KVRUN_GPTQ_WGMMA=0 row "tc" -c $C/qwen7b-gptq-int8-naive.toml --batch 16,32,64 --prompt-tokens 32 --new-tokens 128
  row "wg" -c $C/qwen7b-gptq-int8-naive.toml --batch 16,32,64 --prompt-tokens 32 --new-tokens 128
done
KVRUN_GPTQ_WG_SWAP_DESC=1 row "wg-swap(timing only)" -c $C/qwen7b-gptq-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 128
row "bf16" -c $C/qwen7b-bf16-int8-naive.toml --batch 16,32,64 --prompt-tokens 32 --new-tokens 128
date -u
