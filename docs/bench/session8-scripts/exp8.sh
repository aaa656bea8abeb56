set -uo pipefail
exec > >(tee ${OUT:-.}/session8-exp8.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench; b=build-cuda/tests
echo "commit $(cat .carry/commit)"; date -u
KVRUN_CUDA_GEMV_RING_L2PF_KB=16 timeout 100 $b/test_cuda_ops -tc='*GEMV*,*matmul_fused*' > /tmp/t.log 2>&1; echo "test_cuda_ops GEMV cases, L2PF 16 rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
B1="-c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do for kb in 0 2 4 8 16; do KVRUN_CUDA_GEMV_RING_L2PF_KB=$kb row "b1 l2pf=${kb}K" $B1; done; done
date -u
