# Session 17, call H: the RMSNorm-fused batch-1 GEMV (q·k·v, gate·up, lm_head) sits at the 80-register
# cap and spills 4 bytes; keeping one float4 of x per thread through the norm's reduction instead of
# four (KR = 1; kr1.patch, module carried as /tmp/o/kr1, first on KVRUN_PLUGIN_PATH) removes the
# spill (-Xptxas -v). Interleaved rows against the build's backend, and test_cuda_ops' GEMV cases
# with the variant swapped into the build folder.
set -uo pipefail
exec > >(tee ${OUT:-.}/session17-h.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/exp.tgz -C /tmp/o
row_header
for i in 1 2 3; do
  row "bf16 int8 B1 KR=4 (main)" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=/tmp/o/kr1 row "bf16 int8 B1 KR=1       " -c $C/qwen7b-bf16-int8-naive.toml $B1
done
f=build-cuda/backends/cuda/kvrun_backend_cuda.so
cp $f /tmp/main.so && cp /tmp/o/kr1/kvrun_backend_cuda.so $f
timeout 120 $b/test_cuda_ops -tc='*matmul*,*GEMV*' 2>&1 | tail -3
cp /tmp/main.so $f
date -u
