# Session 20, call F (the last ~4 minutes of device time): gemm_tc_kernel, GPTQ at 9..64 rows.
# The GPTQ Linear case against the CPU (M 16, 24, 33, 64 take the new kernel), the fixture cases,
# then batches 16 / 32 / 64 with the kernel on and off (KVRUN_GPTQ_TC_GEMM=0), memcheck last.
set -uo pipefail
exec > >(tee ${OUT:-.}/session20-f.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 60 $b/test_plugin_weights_gptq -tc='CUDA Linear matches*' 2>&1 | grep -E "ERROR|CHECK|worst|test cases|rel" | head -30
timeout 60 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|test cases|ppl|agreement" | head -20
row_header
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 16,32,64 --prompt-tokens 32 --new-tokens 128"
row "gptq int8 tc on" $G
KVRUN_GPTQ_TC_GEMM=0 row "gptq int8 tc off" $G
row "bf16 int8" -c $C/qwen7b-bf16-int8-naive.toml --batch 16,32,64 --prompt-tokens 32 --new-tokens 128
date -u
timeout 50 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='CUDA Linear matches*' 2>&1 | tail -3
date -u
