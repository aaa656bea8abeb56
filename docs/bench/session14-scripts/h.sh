# Session 14, call H (diagnostic): is the bf16 attention output taken at batch 64 in the bench?
# (call G's ncu list still showed an f32 → bf16 conversion before o). The model's debug line for
# each step shape. Fixtures tiny-qwen2.
set -uo pipefail
exec > >(tee ${OUT:-.}/session14-h.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
KVRUN_LOG=debug $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 16,64 --prompt-tokens 32 --new-tokens 4 2>&1 | grep "attention output" | sort | uniq -c
KVRUN_LOG=debug $k bench -c $C/qwen7b-bf16-fp16-flash.toml --batch 64 --prompt-tokens 32 --new-tokens 4 2>&1 | grep "attention output" | sort | uniq -c
date -u
