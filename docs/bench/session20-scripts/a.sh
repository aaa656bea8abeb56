# Session 20, call A: every table of docs/PERFORMANCE.md measured again on one machine, in one
# call, with the code of `main` (the "Commands" section's sweeps; JSON per sweep in docs/bench/).
# The GPU's clocks and power are printed first and last: rows of different machines differ by a
# few %, and this says whether clocks are what differs.
set -uo pipefail
exec > >(tee ${OUT:-.}/session20-a.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
q="--query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.draw,power.limit,temperature.gpu,pstate"
nvidia-smi $q --format=csv
nvidia-smi -q -d CLOCK | sed -n '/Applications Clocks/,/Max Customer/p' | head -20
J=${OUT:-.}
sweep="--batch 1,4,16,32,64,100 --prompt-tokens 32 --new-tokens 1024"
row_header
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $sweep --json $J/session20-bf16-fp16-flash.json
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $sweep --json $J/session20-bf16-int8-naive.json
row "bf16 fp16 naive" -c $C/qwen7b-bf16-int8-naive.toml --set cache.type=fp16 $sweep --json $J/session20-bf16-fp16-naive.json
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml --batch 1,16 --prompt-tokens 32 --new-tokens 256 --json $J/session20-gptq-int8-naive.json
row "gptq fp16 flash" -c $C/qwen7b-gptq-fp16-flash.toml --batch 1,16 --prompt-tokens 32 --new-tokens 256 --json $J/session20-gptq-fp16-flash.json
for i in 1 2; do
  row "bf16 int8 naive B1 again" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "gptq int8 naive B1 again" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
nvidia-smi $q --format=csv,noheader
date -u
