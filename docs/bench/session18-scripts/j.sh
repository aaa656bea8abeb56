# Session 18, call J (final code, same machine as call I): the summary rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-j.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
row_header
row "bf16 int8 B1" -c $C/qwen7b-bf16-int8-naive.toml $B1
row "bf16 int8 B64" -c $C/qwen7b-bf16-int8-naive.toml $B64
row "bf16 int8 B1" -c $C/qwen7b-bf16-int8-naive.toml $B1
row "bf16 fp16 flash B64" -c $C/qwen7b-bf16-fp16-flash.toml $B64
date -u
