# Session 16, call G: the late-append case extended to MHA (16-warp blocks, early round for fp16
# too); the naive suite once more.
set -uo pipefail
exec > >(tee ${OUT:-.}/session16-g.log) 2>&1
b=build-cuda/tests
echo "commit $(cat .carry/commit)"; date -u
timeout 60 $b/test_plugin_attention_naive -tc='*late*' 2>&1 | tail -3
OUT=/tmp/gc LINES_PER_SUITE=4 timeout 120 scripts/gpu-check.sh test_plugin_attention_naive; echo "gpu-check rc=$?"
date -u
