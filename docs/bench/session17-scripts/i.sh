# Session 17, call I: the CUDA model suite on the final code (generate() frees the cache on an
# error too; the NaN case checks it, overlapped and not), with tiny-qwen2 and tiny-qwen1.
set -uo pipefail
exec > >(tee ${OUT:-.}/session17-i.log) 2>&1
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=10 timeout 200 scripts/gpu-check.sh test_model_cuda
echo "gpu-check rc=$?"
date -u
