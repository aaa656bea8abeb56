# Session 20, call E: the tables of docs/PERFORMANCE.md ("Current results") on the final code, in
# one call: the batch sweeps of the three bf16 pipelines, the GPTQ rows, the length sweeps, the
# combined mode at 2048 tokens, the 8192-token prefill, the Qwen2.5-7B rows. JSON per sweep.
set -uo pipefail
exec > >(tee ${OUT:-.}/session20-e.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
q="--query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.draw,power.limit,temperature.gpu,pstate"
nvidia-smi $q --format=csv
J=${OUT:-.}/json
mkdir -p $J
sweep="--batch 1,4,16,32,64,100 --prompt-tokens 32 --new-tokens 1024"
lens="--batch 1 --prompt-tokens 32 --new-tokens 512,1024,2048,4096,8192"
Q25="--set model.synthetic=qwen2.5-7b"
row_header
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $sweep --json $J/bf16-fp16-flash.json
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $sweep --json $J/bf16-int8-naive.json
row "bf16 fp16 naive" -c $C/qwen7b-bf16-int8-naive.toml --set cache.type=fp16 $sweep --json $J/bf16-fp16-naive.json
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml --batch 1,16,64 --prompt-tokens 32 --new-tokens 256 --json $J/gptq-int8-naive.json
row "gptq fp16 flash" -c $C/qwen7b-gptq-fp16-flash.toml --batch 1,16,64 --prompt-tokens 32 --new-tokens 256 --json $J/gptq-fp16-flash.json
row "bf16 int8 naive B1 256" -c $C/qwen7b-bf16-int8-naive.toml $B1 --json $J/bf16-int8-naive-b1-256.json
row "bf16 fp16 flash B1 256" -c $C/qwen7b-bf16-fp16-flash.toml $B1 --json $J/bf16-fp16-flash-b1-256.json
row "bf16 fp16 flash len" -c $C/qwen7b-bf16-fp16-flash.toml $lens --json $J/len-bf16-fp16-flash.json
row "bf16 int8 naive len" -c $C/qwen7b-bf16-int8-naive.toml $lens --json $J/len-bf16-int8-naive.json
row "gptq int8 naive 2048" -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 2048 --json $J/gptq-int8-naive-2048.json
row "bf16 int8 naive prefill 8192" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 32 --json $J/prefill-8192-int8.json
row "bf16 fp16 flash prefill 8192" -c $C/qwen7b-bf16-fp16-flash.toml --batch 1 --prompt-tokens 8192 --new-tokens 32 --json $J/prefill-8192-fp16-flash.json
row "qwen2.5 bf16 int8 B1" -c $C/qwen7b-bf16-int8-naive.toml $Q25 $B1 --json $J/qwen25-bf16-int8-b1.json
row "qwen2.5 bf16 int8 B64" -c $C/qwen7b-bf16-int8-naive.toml $Q25 $B64 --json $J/qwen25-bf16-int8-b64.json
row "qwen2.5 gptq int8 B1" -c $C/qwen7b-gptq-int8-naive.toml $Q25 $B1 --json $J/qwen25-gptq-int8-b1.json
nvidia-smi $q --format=csv,noheader
date -u
# (As run, the JSON files were left one per sweep under $OUT/json; a call brings back only its
# first eight files, so eight sweeps' JSON was lost — their rows are in the log. One archive:)
tar -czf ${OUT:-.}/session20-e-json.tgz -C $J .
