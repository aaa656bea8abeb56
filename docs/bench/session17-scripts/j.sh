# Session 17, call J: the CUDA model suite after the review commit (engine refactor: same behaviour;
# the overlap, NaN and sampling cases run on the GPU), with tiny-qwen2 and tiny-qwen1.
set -uo pipefail
exec > >(tee ${OUT:-.}/session17-j.log) 2>&1
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=10 timeout 200 scripts/gpu-check.sh test_model_cuda
echo "gpu-check rc=$?"
date -u
