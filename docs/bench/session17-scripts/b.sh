# Session 17, call B: overlapped decode (generation.overlap; Queue::copy_d2h_async / wait_for, plugin
# ABI 6). Correctness: test_cuda_ops (the queue case is new), the CUDA model suite (the overlap case
# is new: same sequences as one step at a time — eos, stop strings, sampling, cache_full), memcheck
# of both new cases. Speed: rows with the overlap (default "auto" = on for a GPU) against
# --set generation.overlap=off in the same call, interleaved.
set -uo pipefail
exec > >(tee ${OUT:-.}/session17-b.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=6 timeout 400 scripts/gpu-check.sh test_cuda_ops test_model_cuda
echo "gpu-check rc=$?"
grep -E "overlap|copy_d2h_async" /tmp/gc/*.log | head
echo "== memcheck overlap case"
timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $b/test_model_cuda -tc='*overlapped*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Status" | head -4
echo "== memcheck copy_d2h_async case"
timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $b/test_cuda_ops -tc='*copy_d2h_async*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Status" | head -4
row_header
for i in 1 2; do
  row "bf16 int8 B1 overlap" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "bf16 int8 B1 off    " -c $C/qwen7b-bf16-int8-naive.toml $B1 --set generation.overlap=\"off\"
done
row "gptq int8 B1 overlap" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "gptq int8 B1 off    " -c $C/qwen7b-gptq-int8-naive.toml $B1 --set generation.overlap=\"off\"
row "bf16 fp16 flash B1 overlap" -c $C/qwen7b-bf16-fp16-flash.toml $B1
row "bf16 int8 B64 overlap" -c $C/qwen7b-bf16-int8-naive.toml $B64
row "bf16 int8 B64 off    " -c $C/qwen7b-bf16-int8-naive.toml $B64 --set generation.overlap=\"off\"
$k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 8 2>&1 | grep -E "^prompts"
date -u
