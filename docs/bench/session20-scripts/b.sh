# Session 20, call B: (1) the batch-1 decode attention's split at longer contexts — the step grows
# 3.76 → 3.86 ms from 256 to 1024 new tokens while its floor grows 0.03 ms; with the rule of
# session 16 a part is one 256-key round of a 16-warp block, so ~100 blocks read the keys. Forced
# warps / parts (KVRUN_NAIVE_DECODE_WARPS / _SPLITS) against the automatic pick, same call.
# (2) the length sweeps, the combined mode, the 8192-token prefill and the Qwen2.5-7B rows for the
# tables of docs/PERFORMANCE.md.
set -uo pipefail
exec > >(tee ${OUT:-.}/session20-b.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
J=${OUT:-.}
L1024="--batch 1 --prompt-tokens 32 --new-tokens 1024"
L4k="--batch 1 --prompt-tokens 4096 --new-tokens 256"
L8k="--batch 1 --prompt-tokens 8192 --new-tokens 256"
# ab W S NAME ARGS...: a row with W warps and S parts forced (0: the automatic pick).
ab() {
  local w=$1 s=$2; shift 2
  local e=()
  [ "$w" != 0 ] && e+=(KVRUN_NAIVE_DECODE_WARPS=$w)
  [ "$s" != 0 ] && e+=(KVRUN_NAIVE_DECODE_SPLITS=$s)
  env "${e[@]}" bash -c 'source scripts/bench-lib.sh; row "$@"' _ "$@"
}
row_header
for i in 1 2; do
  for ws in 0:0 4:8 4:16 4:32 1:32 16:8; do
    w=${ws%:*} s=${ws#*:}
    ab $w $s "int8 B1 1024 w$w s$s" -c $C/qwen7b-bf16-int8-naive.toml $L1024
  done
done
for ws in 0:0 4:16 4:32 1:32; do
  w=${ws%:*} s=${ws#*:}
  ab $w $s "fp16 flash B1 1024 w$w s$s" -c $C/qwen7b-bf16-fp16-flash.toml $L1024
  ab $w $s "int8 B1 4k+256 w$w s$s" -c $C/qwen7b-bf16-int8-naive.toml $L4k
  ab $w $s "int8 B1 8k+256 w$w s$s" -c $C/qwen7b-bf16-int8-naive.toml $L8k
done
date -u
lens="--batch 1 --prompt-tokens 32 --new-tokens 512,1024,2048,4096,8192"
row "bf16 fp16 flash len" -c $C/qwen7b-bf16-fp16-flash.toml $lens --json $J/session20-len-bf16-fp16-flash.json
row "bf16 int8 naive len" -c $C/qwen7b-bf16-int8-naive.toml $lens --json $J/session20-len-bf16-int8-naive.json
row "gptq int8 naive 2048" -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 2048 --json $J/session20-gptq-int8-2048.json
row "bf16 int8 naive prefill 8192" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 32 --json $J/session20-prefill-8192.json
Q25="--set model.synthetic=qwen2.5-7b"
row "qwen2.5 bf16 int8 B1" -c $C/qwen7b-bf16-int8-naive.toml $Q25 $B1
row "qwen2.5 bf16 int8 B64" -c $C/qwen7b-bf16-int8-naive.toml $Q25 $B64
row "qwen2.5 gptq int8 B1" -c $C/qwen7b-gptq-int8-naive.toml $Q25 $B1
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv,noheader
date -u
