# Shared helpers for the per-call scripts under docs/bench/session*-scripts/ (docs/GPU.md): source
# it from the repository root on the GPU machine (after scripts/gpu-run.sh's setup), then call
# `row NAME kvrun-bench-arguments...`: one line per batch size of `kvrun bench`, prefixed with NAME.
#   b, k, C   test folder, kvrun binary, bench configs
#   B1, B64   the batch-1 (32-token prompt, 256 new) and batch-64 (1024 new) arguments
#   old_modules FILE.tgz   unpacks a carried older build's modules to /tmp/old-modules/<top folder>
#                          (for a same-call A/B: KVRUN_PLUGIN_PATH=/tmp/old-modules/<top folder> row ...)
b=build-cuda/tests
k=build-cuda/apps/kvrun
C=configs/bench
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
B64="--batch 64 --prompt-tokens 32 --new-tokens 1024"
row() {
  local name=$1
  shift
  "$k" bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'
}
row_header() { echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"; }
old_modules() { mkdir -p /tmp/old-modules && tar -xzf "$1" -C /tmp/old-modules; }
