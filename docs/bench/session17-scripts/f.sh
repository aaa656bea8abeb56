# Session 17, call F: the SwiGLU in the batch-1 gate·up GEMV's epilogue (MatmulFusion::swiglu_out:
# a warp's 4 rows are 2 gate and 2 up rows; one kernel fewer per layer), and the last norm reading x
# itself when every token's logits are wanted (no gather kernel per decode step). Suites:
# test_cuda_ops (new swiglu_out case: bitwise against the GEMV + swiglu), the CUDA model suite;
# memcheck of the new case. Rows: KVRUN_CUDA_SWIGLU_OUT=1 (default) against 0, interleaved.
set -uo pipefail
exec > >(tee ${OUT:-.}/session17-f.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=8 timeout 300 scripts/gpu-check.sh test_cuda_ops test_model_cuda
echo "gpu-check rc=$?"
echo "== memcheck swiglu_out case"
timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $b/test_cuda_ops -tc='*swiglu_out*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Status|Invalid" | head -6
row_header
for i in 1 2 3; do
  row "bf16 int8 B1 swiglu_out" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_CUDA_SWIGLU_OUT=0 row "bf16 int8 B1 SWO=0     " -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "bf16 fp16 flash B1" -c $C/qwen7b-bf16-fp16-flash.toml $B1
row "gptq int8 B1" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "bf16 int8 B64" -c $C/qwen7b-bf16-int8-naive.toml $B64
date -u
