# Prepared in session 10, not run: where the batch-1 GPTQ GEMV's issue slots go, by source line
# (main builds with -lineinfo since session 10). One call of each Linear shape; the per-line
# table (stall samples, instructions executed) lands in $OUT. Run after scripts/gpu-pack.sh
# tiny-qwen2 as scripts/gpu-run.sh bash .carry/next-gptq-source.sh
set -uo pipefail
exec > >(tee ${OUT:-.}/session11-gptq-source.log) 2>&1
date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
ncu --clock-control none -k regex:gemv1 --launch-skip 128 --launch-count 4 --set full --import-source yes \
  -o /tmp/gemv1 build-cuda/apps/kvrun generate -c /tmp/g.toml --prompt-ids 1,2,3,4 --max-new-tokens 4 > /tmp/ncu.out 2>&1
tail -3 /tmp/ncu.out
ncu --import /tmp/gemv1.ncu-rep --page source --csv --print-source cuda > ${OUT:-.}/gemv1-source.csv 2>&1
ncu --import /tmp/gemv1.ncu-rep --page details --section WarpStateStats --section SourceCounters 2>&1 | grep -vE "^\s*$" | head -150
ls -la ${OUT:-.}
date -u
