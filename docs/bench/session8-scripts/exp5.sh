set -uo pipefail
exec > >(tee ${OUT:-.}/session8-exp5.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench; b=build-cuda/tests
echo "commit $(cat .carry/commit) (B = this build; A = .carry/vA.tgz: 91559f5, trigger after the wait)"; date -u
tar -xzf .carry/vA.tgz -C /tmp
for t in test_cuda_ops test_plugin_attention_naive test_plugin_attention_flash test_plugin_cache_fp16 test_plugin_cache_int8 test_plugin_weights_gptq test_model_cuda; do
  timeout 200 $b/$t > /tmp/$t.log 2>&1; echo "$t rc=$? $(grep 'test cases' /tmp/$t.log | tail -1)"; grep -E "ERROR|FAILED" -A8 /tmp/$t.log | head -20; done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
B1="-c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  KVRUN_PLUGIN_PATH=/tmp/vA row "A b1 ring=0" $B1
  row "B b1 ring=0" $B1
  KVRUN_PLUGIN_PATH=/tmp/vA KVRUN_CUDA_GEMV_RING=6 row "A b1 ring=6" $B1
  KVRUN_CUDA_GEMV_RING=6 row "B b1 ring=6" $B1
  KVRUN_CUDA_GEMV_RING=6 KVRUN_CUDA_GEMV_RING_NORM=6 row "B b1 ring=6/6" $B1
  KVRUN_CUDA_GEMV_RING=6 KVRUN_CUDA_GEMV_RING_NORM=3 row "B b1 ring=6/3" $B1
done
for r in 1 2; do
  KVRUN_PLUGIN_PATH=/tmp/vA KVRUN_CUDA_GEMV_RING=6 row "A b1 flash ring=6" -c $C/qwen7b-bf16-fp16-flash.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_CUDA_GEMV_RING=6 row "B b1 flash ring=6" -c $C/qwen7b-bf16-fp16-flash.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_PLUGIN_PATH=/tmp/vA row "A b1 gptq" -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  row "B b1 gptq" -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_PLUGIN_PATH=/tmp/vA row "A b64" -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  row "B b64" -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
KVRUN_PLUGIN_PATH=/tmp/vA KVRUN_CUDA_GEMV_RING=6 row "A b1 8k ring=6" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
KVRUN_CUDA_GEMV_RING=6 row "B b1 8k ring=6" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
date -u
