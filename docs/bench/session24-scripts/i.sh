# Session 24, call I: the Qwen2.5-7B shape (GQA 28 / 4, hidden 3584, MLP 18944) at 16..64 rows with
# the final code, two tiles forced, gemm_tc_kernel, and bf16.
set -uo pipefail
exec > >(tee ${OUT:-.}/session24-i.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
row_header
G="--batch 16,32,48,64 --prompt-tokens 32 --new-tokens 128 --set model.synthetic=qwen2.5-7b"
row "q25 final" -c $C/qwen7b-gptq-int8-naive.toml $G
KVRUN_GPTQ_WG_TILES=2 row "q25 two" -c $C/qwen7b-gptq-int8-naive.toml $G
KVRUN_GPTQ_WGMMA=0 row "q25 tc" -c $C/qwen7b-gptq-int8-naive.toml $G
row "q25 bf16" -c $C/qwen7b-bf16-int8-naive.toml $G
date -u
