#!/usr/bin/env bash
# Kernel time breakdown of one decode step of the Qwen-7B shape (through gpu-run.sh), batch 1, or
# batch $BATCH with BATCH set (e.g. BATCH=64 ATTN=naive CACHE=int8; PROMPT=512 or NEW=600 with a SKIP past
# the prefill for longer contexts):
# ncu times every kernel of the run; the summary groups the last step's kernels by name.
set -uo pipefail
out=${OUT:-gpu-logs}
mkdir -p "$out"
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "%s"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "%s"\n[cache]\ntype = "%s"\n' \
  "${WEIGHTS:-bf16}" "${ATTN:-flash}" "${CACHE:-fp16}" > /tmp/prof.toml
if [ -n "${BATCH:-}" ]; then  # a decode step at batch BATCH: kvrun bench, no batch-1 warmup
  ncu --csv --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --launch-skip ${SKIP:-2200} --launch-count ${COUNT:-1000} \
    build-cuda/apps/kvrun bench -c /tmp/prof.toml --batch "$BATCH" --prompt-tokens ${PROMPT:-32} --new-tokens ${NEW:-8} --warmup-tokens 0 \
    > "$out/ncu.csv" 2> "$out/ncu.err"
else
  ncu --csv --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --launch-skip ${SKIP:-700} --launch-count ${COUNT:-1200} \
    build-cuda/apps/kvrun generate -c /tmp/prof.toml --prompt-ids 1,2,3,4 --max-new-tokens 4 > "$out/ncu.csv" 2> "$out/ncu.err"
fi
if ! grep -q '"Kernel Name"' "$out/ncu.csv" 2>/dev/null; then  # no kernel rows: say why instead of a traceback
  echo "gpu-profile: ncu wrote no kernel rows; the end of its stderr ($out/ncu.err) and stdout:" >&2
  tail -20 "$out/ncu.err" >&2
  tail -5 "$out/ncu.csv" >&2
  exit 1
fi
python3 "$(dirname "$0")/ncu-summary.py" "$out/ncu.csv" ${TOP:-18}
