# Session 17, call D: a NaN in the logits ends generation with an error instead of token 0 — both
# samplers give -1 for such a row (greedy kernels: a block-wide OR of isnan; the sorted path: a NaN
# sorts first or last), the CUDA embedding gives a zero row for an id out of range (the overlapped
# step issued with the -1), the engine reports it (ErrorKind::model) after draining the step in
# flight. Suites: test_cuda_ops (new sampler case), the CUDA model suite (new NaN case, overlap case),
# memcheck of both new model cases; rows to see the argmax change cost nothing.
set -uo pipefail
exec > >(tee ${OUT:-.}/session17-d.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=8 timeout 300 scripts/gpu-check.sh test_cuda_ops test_model_cuda
echo "gpu-check rc=$?"
echo "== memcheck NaN + overlap cases"
timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $b/test_model_cuda -tc='*NaN*,*overlapped*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Status|Invalid" | head -6
echo "== memcheck sampler NaN case"
timeout 300 compute-sanitizer --tool memcheck --print-limit 5 $b/test_cuda_ops -tc='*NaN*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Status|Invalid" | head -6
row_header
for i in 1 2; do
  row "bf16 int8 B1 overlap" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "bf16 int8 B1 off    " -c $C/qwen7b-bf16-int8-naive.toml $B1 --set generation.overlap=\"off\"
done
row "gptq int8 B1 overlap" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "bf16 int8 B64 overlap" -c $C/qwen7b-bf16-int8-naive.toml $B64
date -u
