# Session 24, call G: tc_xfrag_kernel (the 9..64-row kernels' x conversion, one block per row) with
# 512 or 1024 threads a block instead of 256 (variant builds: KVRUN_XF_THREADS).
set -uo pipefail
exec > >(tee ${OUT:-.}/session24-g.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
for v in xf512 xf1024; do echo "== $v"; KVRUN_PLUGIN_PATH=.carry/var/$v timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | grep -E "ERROR|test cases" | head -3; done
row_header
G="--batch 16,32,48,64 --prompt-tokens 32 --new-tokens 128"
for i in 1 2; do
  row "xf256" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_PLUGIN_PATH=.carry/var/xf512 row "xf512" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_PLUGIN_PATH=.carry/var/xf1024 row "xf1024" -c $C/qwen7b-gptq-int8-naive.toml $G
done
date -u
