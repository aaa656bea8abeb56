# Session 21, call E: same-call A/B of gemm_tc_kernel as committed in e91ea2d (call B's build,
# carried in .carry/old-b) against the working tree (x fragments read 16 bytes at a time, no
# branch around the mma, the sums staged through shared memory for the stores; no cluster path).
set -uo pipefail
exec > >(tee ${OUT:-.}/session21-e.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 90 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases" | head -20
timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -2
row_header
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 24,32,48,64 --prompt-tokens 32 --new-tokens 128"
for rep in 1 2; do
  row "new $rep" $G
  KVRUN_PLUGIN_PATH=$PWD/.carry/old-b row "e91ea2d $rep" $G
done
row "bf16 int8" -c $C/qwen7b-bf16-int8-naive.toml --batch 24,48 --prompt-tokens 32 --new-tokens 128
date -u
