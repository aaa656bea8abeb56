# Session 12, exp6: branch gptq-trace — the batch-1 GPTQ GEMV's blocks record %globaltimer at
# start, PDL-wait return, main-loop start and end (KVRUN_GPTQ_TRACE=FILE); trace_summary.py turns
# that into per-launch gaps, prologue, loop and imbalance. Trigger at start (default) and at the
# end (KVRUN_GPTQ_G1_TRIGGER=0), graphs on, Qwen-7B shape, GPTQ int4 + int8 KV + naive.
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-exp6.log) 2>&1
k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for trig in 1 0; do
  echo "== KVRUN_GPTQ_G1_TRIGGER=$trig"
  KVRUN_GPTQ_G1_TRIGGER=$trig KVRUN_GPTQ_TRACE=/tmp/trace$trig.csv $k generate -c /tmp/g.toml --prompt-ids $(seq -s, 1 32) --max-new-tokens 10 > /tmp/gen$trig.log 2>&1
  echo "rc=$? lines=$(wc -l < /tmp/trace$trig.csv)"; tail -2 /tmp/gen$trig.log
  python3 .carry/trace_summary.py /tmp/trace$trig.csv 3
done
head -c 300000 /tmp/trace1.csv > ${OUT:-.}/session12-trace1-head.csv
date -u
