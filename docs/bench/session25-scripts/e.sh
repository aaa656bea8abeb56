# Session 25, call E: GPTQ int4 at 40..64 rows, the Qwen2.5-7B shape, with the tiles per
# warp of gemm_wg_kernel chosen per Linear (default), one and two forced — session 24 found Qwen2.5-7B
# slower at 48 rows (5.05) than at 64 (4.72 ms/step), and slower than bf16 there.
set -uo pipefail
exec > >(tee ${OUT:-.}/session25-e.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.limit --format=csv,noheader
row_header
G="--batch 40,48,56,64 --prompt-tokens 32 --new-tokens 128"
for shape in qwen2.5-7b; do
  row "$shape auto" -c $C/qwen7b-gptq-int8-naive.toml --set model.synthetic=$shape $G
  KVRUN_GPTQ_WG_TILES=1 row "$shape one" -c $C/qwen7b-gptq-int8-naive.toml --set model.synthetic=$shape $G
  KVRUN_GPTQ_WG_TILES=2 row "$shape two" -c $C/qwen7b-gptq-int8-naive.toml --set model.synthetic=$shape $G
  row "$shape bf16" -c $C/qwen7b-bf16-int8-naive.toml --set model.synthetic=$shape $G
done
date -u
