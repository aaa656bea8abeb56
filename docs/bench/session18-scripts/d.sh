# Session 18, call D: the batch-1 bf16 GEMVs calling pdl_trigger at their start instead of after
# their main loop (experimental build, uncommitted: KVRUN_EXP_TRIGGER=1 every GEMV whose grid fits
# in one wave, 3 only the ring ones (o, down), 4 only the fused-norm q·k·v, 2 all of them).
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-d.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit) + KVRUN_EXP_TRIGGER (uncommitted)"; date -u
row_header
for i in 1 2; do
  for t in 0 1 3 4 2; do
    KVRUN_EXP_TRIGGER=$t row "B1 trigger $t" -c $C/qwen7b-bf16-int8-naive.toml $B1
  done
done
for t in 0 1; do
  KVRUN_EXP_TRIGGER=$t row "gptq B1 trigger $t" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
timeout 120 $b/test_model_cuda 2>&1 | tail -2
KVRUN_EXP_TRIGGER=1 timeout 120 $b/test_model_cuda 2>&1 | tail -2
date -u
