# Session 20, call C: call B found more split parts slower at batch 1 (1024 new: 8 parts 4.04,
# automatic 3.91). Fewer parts than the automatic pick, same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session20-c.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
ab() {
  local w=$1 s=$2; shift 2
  local e=()
  [ "$w" != 0 ] && e+=(KVRUN_NAIVE_DECODE_WARPS=$w)
  [ "$s" != 0 ] && e+=(KVRUN_NAIVE_DECODE_SPLITS=$s)
  env "${e[@]}" bash -c 'source scripts/bench-lib.sh; row "$@"' _ "$@"
}
L1024="--batch 1 --prompt-tokens 32 --new-tokens 1024"
L4k="--batch 1 --prompt-tokens 4096 --new-tokens 256"
L8k="--batch 1 --prompt-tokens 8192 --new-tokens 256"
row_header
for i in 1 2; do
  for s in 0 1 2 3 4; do ab 0 $s "int8 B1 1024 s$s" -c $C/qwen7b-bf16-int8-naive.toml $L1024; done
  for s in 0 1 2; do ab 0 $s "int8 B1 256 s$s" -c $C/qwen7b-bf16-int8-naive.toml $B1; done
done
for s in 0 1 2; do ab 0 $s "fp16 flash B1 1024 s$s" -c $C/qwen7b-bf16-fp16-flash.toml $L1024; done
for s in 0 2 4 8 16; do ab 0 $s "int8 B1 4k+256 s$s" -c $C/qwen7b-bf16-int8-naive.toml $L4k; done
for s in 0 4 8 16 32; do ab 0 $s "int8 B1 8k+256 s$s" -c $C/qwen7b-bf16-int8-naive.toml $L8k; done
for s in 0 1 2 4; do ab 0 $s "int8 B4 1024 s$s" -c $C/qwen7b-bf16-int8-naive.toml --batch 4 --prompt-tokens 32 --new-tokens 1024; done
date -u
