set -uo pipefail
exec > >(tee ${OUT:-.}/session8-final.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for t in test_cuda_ops test_plugin_attention_naive test_plugin_attention_flash test_plugin_cache_fp16 test_plugin_cache_int8 test_plugin_weights_gptq test_model_cuda; do
  timeout 200 $b/$t > /tmp/$t.log 2>&1; echo "$t rc=$? $(grep 'test cases' /tmp/$t.log | tail -1)"; grep -E "ERROR|FAILED" -A8 /tmp/$t.log | head -30; grep -E "^tiny|CUDA vs CPU|CUDA fused" /tmp/$t.log | head -14; done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
for r in 1 2; do
  row b1-bf16-int8 -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_CUDA_GEMV_RING=0 row b1-bf16-int8-ring0 -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done
KVRUN_CUDA_FUSE=0 row b1-bf16-int8-unfused -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
row b1-bf16-flash -c $C/qwen7b-bf16-fp16-flash.toml --batch 1 --prompt-tokens 32 --new-tokens 256
row b1-gptq-int8 -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
row b1-gptq-flash -c $C/qwen7b-gptq-fp16-flash.toml --batch 1 --prompt-tokens 32 --new-tokens 256
row b4-bf16-int8 -c $C/qwen7b-bf16-int8-naive.toml --batch 4 --prompt-tokens 32 --new-tokens 256
row b16-bf16-int8 -c $C/qwen7b-bf16-int8-naive.toml --batch 16 --prompt-tokens 32 --new-tokens 256
row b16-gptq-int8 -c $C/qwen7b-gptq-int8-naive.toml --batch 16 --prompt-tokens 32 --new-tokens 128
for r in 1 2; do row b64-bf16-int8 -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024; done
row b64-bf16-fp16-naive -c $C/qwen7b-bf16-int8-naive.toml --set cache.type=fp16 --batch 64 --prompt-tokens 32 --new-tokens 1024
row b64-bf16-flash -c $C/qwen7b-bf16-fp16-flash.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
row b1-8k-int8 -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
row b1-8k-flash -c $C/qwen7b-bf16-fp16-flash.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
date -u
for m in tiny-qwen2 tiny-qwen2-gptq-int4; do for pipe in fp16:flash int8:naive; do c=${pipe%%:*}; a=${pipe##*:}
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "%s"\n[attention]\nkind = "%s"\n' "$KVRUN_FIXTURES/$m" $c $a > /tmp/p.toml
echo "ppl $m $pipe: $($k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"; done; done
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_cuda_ops -tce='*out-of-memory*' > /tmp/s1.log 2>&1; echo "memcheck test_cuda_ops (all but the out-of-memory case) rc=$? $(grep 'ERROR SUMMARY' /tmp/s1.log|tail -1)"
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive > /tmp/s2.log 2>&1; echo "memcheck attention_naive rc=$? $(grep 'ERROR SUMMARY' /tmp/s2.log|tail -1)"
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_cache_int8 > /tmp/s3.log 2>&1; echo "memcheck cache int8 rc=$? $(grep 'ERROR SUMMARY' /tmp/s3.log|tail -1)"
date -u
