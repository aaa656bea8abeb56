# Session 22, call E: how much of the batch-1 GPTQ step is gemv1's arithmetic — a throw-away probe
# (KVRUN_GPTQ_G1_PROBE; outputs meaningless): 1 = the codes dequantized but no mma, 2 = neither
# (the loads, the ring and the x fragments stay).
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-e.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
row_header
for i in 1 2; do
  row "g1" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_GPTQ_G1_PROBE=1 row "g1 probe1 no mma" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_GPTQ_G1_PROBE=2 row "g1 probe2 no math" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
date -u
