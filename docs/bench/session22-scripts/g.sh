# Session 22, call G: gemv1 with the zero point folded out of the inner loop (KVRUN_GPTQ_G1_FOLD=1:
# A = 128 + code straight from the LOP3, each chunk's sums less (128 + z)·Σx) against the default,
# same build: the GPTQ suite and the perplexity with it, batch 1 A/B.
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-g.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
KVRUN_GPTQ_G1_FOLD=1 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|CHECK|worst|test cases" | head -20
timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|worst|test cases" | head -20
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
echo "ppl window 11 fold: $(KVRUN_GPTQ_G1_FOLD=1 $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 11 --max-windows 300 2>&1 | tail -1)"
row_header
for i in 1 2; do
  row "g1" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_GPTQ_G1_FOLD=1 row "g1 fold" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
row "g1 q2.5" -c $C/qwen7b-gptq-int8-naive.toml $B1 --set model.synthetic=qwen2.5-7b
KVRUN_GPTQ_G1_FOLD=1 row "g1 fold q2.5" -c $C/qwen7b-gptq-int8-naive.toml $B1 --set model.synthetic=qwen2.5-7b
date -u
