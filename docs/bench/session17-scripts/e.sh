# Session 17, call E: with the overlapped decode, how much of a step's time on the GPU is not the
# decode graph — the metadata copy, the sampler's kernels, the ids copy back, idle? A throw-away
# backend (KVRUN_EXP_STEPTIME; patch in docs/bench/session17-scripts/graphtimer.patch, module carried
# as /tmp/o/exp) records events around each graph launch and prints the medians of the graph's time
# and of the interval between consecutive graph starts.
set -uo pipefail
exec > >(tee ${OUT:-.}/session17-e.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/exp.tgz -C /tmp/o
for cfg in qwen7b-bf16-int8-naive qwen7b-gptq-int8-naive; do
  for ov in auto off; do
    echo "== $cfg batch 1 overlap $ov"
    KVRUN_EXP_STEPTIME=1 KVRUN_PLUGIN_PATH=/tmp/o/exp $k bench -c $C/$cfg.toml $B1 --set generation.overlap=\"$ov\" 2>&1 | grep -E "EXP|^ +1 "
  done
done
echo "== bf16 int8 batch 64 overlap auto"
KVRUN_EXP_STEPTIME=1 KVRUN_PLUGIN_PATH=/tmp/o/exp $k bench -c $C/qwen7b-bf16-int8-naive.toml $B64 2>&1 | grep -E "EXP|^ +64 "
date -u
