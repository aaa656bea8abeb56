#!/usr/bin/env bash
# Kernel time breakdown of one decode step of the Qwen-7B shape (through gpu-run.sh), batch 1, or
# batch $BATCH with BATCH set (e.g. BATCH=64 ATTN=naive CACHE=int8, PROMPT=512 for longer contexts):
# ncu times every kernel of the run; the summary groups the last step's kernels by name.
set -uo pipefail
out=${OUT:-gpu-logs}
mkdir -p "$out"
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "%s"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "%s"\n[cache]\ntype = "%s"\n' \
  "${WEIGHTS:-bf16}" "${ATTN:-flash}" "${CACHE:-fp16}" > /tmp/prof.toml
if [ -n "${BATCH:-}" ]; then  # a decode step at batch BATCH: kvrun bench, no batch-1 warmup
  ncu --csv --metrics gpu__time_duration.sum --launch-skip ${SKIP:-2200} --launch-count ${COUNT:-1000} \
    build-cuda/apps/kvrun bench -c /tmp/prof.toml --batch "$BATCH" --prompt-tokens ${PROMPT:-32} --new-tokens 8 --warmup-tokens 0 \
    > "$out/ncu.csv" 2> "$out/ncu.err"
else
  ncu --csv --metrics gpu__time_duration.sum --launch-skip ${SKIP:-700} --launch-count ${COUNT:-1200} \
    build-cuda/apps/kvrun generate -c /tmp/prof.toml --prompt-ids 1,2,3,4 --max-new-tokens 4 > "$out/ncu.csv" 2> "$out/ncu.err"
fi
python3 - "$out/ncu.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; rows = rows[1:]
iid, iname, ival = hdr.index("ID"), hdr.index("Kernel Name"), hdr.index("Metric Value")
per = collections.OrderedDict()
for r in rows:
    per.setdefault(r[iid], [r[iname], 0.0])
    per[r[iid]][1] += float(r[ival].replace(",", ""))
ks = list(per.values())
# one decode step = from the last embedding kernel on
starts = [i for i, k in enumerate(ks) if "embedding" in k[0]]
step = ks[starts[-2]:starts[-1]] if len(starts) >= 2 else ks
tot = collections.Counter(); cnt = collections.Counter()
for name, ns in step:
    short = name.split("(")[0].split("<")[0][-48:]
    tot[short] += ns; cnt[short] += 1
allns = sum(tot.values())
print(f"decode step: {len(step)} kernels, {allns/1e6:.3f} ms of kernel time")
for k, v in tot.most_common(15):
    print(f"  {v/1e6:8.3f} ms {100*v/allns:5.1f} %  x{cnt[k]:4d}  {k}")
PY
