# Session 19, call G: the final wave rule (80 %) through the suites; the rows both ways; the GPTQ
# batch-1 kernel's k split allowed past one resident wave (KVRUN_GPTQ_G1_WAVES 1 = so far, 2, 4):
# more, smaller blocks spread over the SMs by the scheduler instead of 2 or 3 per SM.
set -uo pipefail
exec > >(tee ${OUT:-.}/session19-g.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
Q25="--set model.synthetic=qwen2.5-7b"
timeout 240 $b/test_cuda_ops -tc='*matmul*,*GEMV*' 2>&1 | grep -E "ERROR|test cases|assertions" -A3 | head -20
timeout 150 $b/test_model_cuda 2>&1 | tail -2
# (the GPTQ suite: not in this call, its fixtures did not fit beside tiny-qwen2)
row_header
for p in 80 90; do
  KVRUN_CUDA_GEMV_MIN_WAVES_PCT=$p row "qwen2.5 bf16 int8 B1 waves $p" -c $C/qwen7b-bf16-int8-naive.toml $Q25 $B1
  KVRUN_CUDA_GEMV_MIN_WAVES_PCT=$p row "qwen7b bf16 int8 B1 waves $p" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "qwen2.5 bf16 fp16 flash B1" -c $C/qwen7b-bf16-fp16-flash.toml $Q25 $B1
for i in 1 2; do
  for v in 1 2 4; do
    KVRUN_GPTQ_G1_WAVES=$v row "qwen7b gptq int8 B1 g1 waves $v" -c $C/qwen7b-gptq-int8-naive.toml $B1
    KVRUN_GPTQ_G1_WAVES=$v row "qwen2.5 gptq int8 B1 g1 waves $v" -c $C/qwen7b-gptq-int8-naive.toml $Q25 $B1
  done
done
date -u
