# Session 17, call G (final code): the whole default GPU suite list (scripts/gpu-check.sh) with
# tiny-qwen2 and tiny-qwen1 (the NaN case), memcheck of the new model cases, and the rows of the
# summary: overlap on (default) and off, interleaved, for bf16 + int8 at batch 1 and 64; flash + fp16,
# GPTQ; a 2048-token batch-1 row.
set -uo pipefail
exec > >(tee ${OUT:-.}/session17-g.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=8 timeout 480 scripts/gpu-check.sh
echo "gpu-check rc=$?"
echo "== memcheck NaN + overlap cases"
timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_model_cuda -tc='*NaN*,*overlapped*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Status|Invalid" | head -6
row_header
for i in 1 2; do
  row "bf16 int8 B1 overlap" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "bf16 int8 B1 off    " -c $C/qwen7b-bf16-int8-naive.toml $B1 --set generation.overlap=\"off\"
done
row "gptq int8 B1 overlap" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "gptq int8 B1 off    " -c $C/qwen7b-gptq-int8-naive.toml $B1 --set generation.overlap=\"off\"
row "bf16 fp16 flash B1" -c $C/qwen7b-bf16-fp16-flash.toml $B1
row "bf16 int8 B1 2048" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 2048
row "bf16 int8 B64 overlap" -c $C/qwen7b-bf16-int8-naive.toml $B64
row "bf16 int8 B64 off    " -c $C/qwen7b-bf16-int8-naive.toml $B64 --set generation.overlap=\"off\"
row "bf16 fp16 flash B64" -c $C/qwen7b-bf16-fp16-flash.toml $B64
date -u
