set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp17.log) 2>&1
echo "commit $(cat .carry/commit)"; date -u
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
timeout 120 .carry/stream_bench
date -u
