# Session 17, call C: one upload of step metadata per step (the model's int32 and f32 arrays packed
# together) and block tables uploaded only when they changed (PagedCacheBase::reserve), on top of
# the overlapped decode. Correctness: the whole default GPU suite list (scripts/gpu-check.sh) —
# the engine, the plugin ABI and the cache's reserve changed. Speed: overlap on / off interleaved.
set -uo pipefail
exec > >(tee ${OUT:-.}/session17-c.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=6 timeout 420 scripts/gpu-check.sh
echo "gpu-check rc=$?"
row_header
for i in 1 2; do
  row "bf16 int8 B1 overlap" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "bf16 int8 B1 off    " -c $C/qwen7b-bf16-int8-naive.toml $B1 --set generation.overlap=\"off\"
done
row "gptq int8 B1 overlap" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "gptq int8 B1 off    " -c $C/qwen7b-gptq-int8-naive.toml $B1 --set generation.overlap=\"off\"
row "bf16 fp16 flash B1 overlap" -c $C/qwen7b-bf16-fp16-flash.toml $B1
row "bf16 int8 B64 overlap" -c $C/qwen7b-bf16-int8-naive.toml $B64
row "bf16 int8 B64 off    " -c $C/qwen7b-bf16-int8-naive.toml $B64 --set generation.overlap=\"off\"
row "bf16 fp16 flash B64 overlap" -c $C/qwen7b-bf16-fp16-flash.toml $B64
date -u
