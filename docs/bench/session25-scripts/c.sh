# Session 25, call C: cuBLASLt's plans in the row-major form (KVRUN_CUDA_LT_ROWMAJOR=1: the batch is
# cuBLASLt's M) against the column form: each plan's timed candidates (both shapes), correctness
# (test_cuda_ops with it on), and same-call decode rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session25-c.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.limit --format=csv,noheader
for shape in qwen-7b qwen2.5-7b; do
  for rm in 0 1; do
    echo "== plans $shape rowmajor=$rm"
    KVRUN_CUDA_LT_ROWMAJOR=$rm KVRUN_CUDA_LT_TUNE_LOG=1 timeout 120 $k bench -c $C/qwen7b-bf16-int8-naive.toml --set model.synthetic=$shape \
      --batch 16,64 --prompt-tokens 32 --new-tokens 4 2>&1 | grep "cuBLASLt plan m \(16\|64\) " | sed 's/ align w\/x\/y 256\/256\/256//' | cut -c1-700
  done
done
date -u
echo "== test_cuda_ops with the row-major form"
KVRUN_CUDA_LT_ROWMAJOR=1 timeout 150 $b/test_cuda_ops 2>&1 | grep -E "ERROR|FAIL|test cases" | head -12
date -u
row_header
for i in 1 2; do
  row "col" -c $C/qwen7b-bf16-int8-naive.toml $B64
  KVRUN_CUDA_LT_ROWMAJOR=1 row "row" -c $C/qwen7b-bf16-int8-naive.toml $B64
done
S="--batch 16,32,100 --prompt-tokens 32 --new-tokens 256"
row "col" -c $C/qwen7b-bf16-int8-naive.toml $S
KVRUN_CUDA_LT_ROWMAJOR=1 row "row" -c $C/qwen7b-bf16-int8-naive.toml $S
row "col q2.5" -c $C/qwen7b-bf16-int8-naive.toml --set model.synthetic=qwen2.5-7b $B64
KVRUN_CUDA_LT_ROWMAJOR=1 row "row q2.5" -c $C/qwen7b-bf16-int8-naive.toml --set model.synthetic=qwen2.5-7b $B64
date -u
