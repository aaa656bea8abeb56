# Session 10, exp1: naive decode through the bulk-copy ring (KVRUN_NAIVE_DECODE_STAGES, default 3)
# against the register path (=0), same build, same call: suites, memcheck/racecheck, bench rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session10-exp1.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
for st in 3 0; do
  KVRUN_NAIVE_DECODE_STAGES=$st timeout 200 $b/test_plugin_attention_naive > /tmp/t$st.log 2>&1
  echo "attention_naive STAGES=$st rc=$? $(grep 'test cases' /tmp/t$st.log | tail -1)"; grep -E "ERROR|FAILED" -A8 /tmp/t$st.log | head -30
done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
for r in 1 2; do for st in 3 0; do
  KVRUN_NAIVE_DECODE_STAGES=$st row b64-int8-st$st -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done; done
for st in 2 4; do
  KVRUN_NAIVE_DECODE_STAGES=$st row b64-int8-st$st -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
for st in 3 0; do
  KVRUN_NAIVE_DECODE_STAGES=$st row b1-int8-st$st -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_NAIVE_DECODE_STAGES=$st row b1-8k-int8-st$st -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
  KVRUN_NAIVE_DECODE_STAGES=$st row b64-fp16-naive-st$st -c $C/qwen7b-bf16-int8-naive.toml --set cache.type=fp16 --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_NAIVE_DECODE_STAGES=$st row b1-gptq-int8-st$st -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done
date -u
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive > /tmp/s2.log 2>&1; echo "memcheck attention_naive (ring) rc=$? $(grep 'ERROR SUMMARY' /tmp/s2.log|tail -1)"
timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 $b/test_plugin_attention_naive -tc='*MHA 1:1, head_dim 128*' > /tmp/s3.log 2>&1; echo "racecheck attention_naive MHA 128 (ring) rc=$? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' /tmp/s3.log|tail -1)"
timeout 100 compute-sanitizer --tool synccheck --error-exitcode 9 $b/test_plugin_attention_naive -tc='*GQA 4:1, head_dim 64*' > /tmp/s4.log 2>&1; echo "synccheck attention_naive GQA 64 (ring) rc=$? $(grep -E 'ERROR SUMMARY' /tmp/s4.log|tail -1)"
date -u
