# Session 10, exp6: naive decode with wide blocks (16 warps, one block per SM) when the grid has at
# most one block per SM, against KVRUN_NAIVE_DECODE_WIDE=0 (4-warp blocks), same build, same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session10-exp6.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
for w in 1 0; do
  KVRUN_NAIVE_DECODE_WIDE=$w timeout 200 $b/test_plugin_attention_naive > /tmp/t$w.log 2>&1
  echo "attention_naive WIDE=$w rc=$? $(grep 'test cases' /tmp/t$w.log | tail -1)"; grep -E "ERROR|FAILED" -A8 /tmp/t$w.log | head -30
done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
for r in 1 2; do for w in 1 0; do
  KVRUN_NAIVE_DECODE_WIDE=$w row b1-int8-wide$w -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_NAIVE_DECODE_WIDE=$w row b1-gptq-int8-wide$w -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done; done
for w in 1 0; do
  KVRUN_NAIVE_DECODE_WIDE=$w row b4-int8-wide$w -c $C/qwen7b-bf16-int8-naive.toml --batch 4 --prompt-tokens 32 --new-tokens 256
  KVRUN_NAIVE_DECODE_WIDE=$w row b1-1k-int8-wide$w -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 1024 --new-tokens 64
  KVRUN_NAIVE_DECODE_WIDE=$w row b1-8k-int8-wide$w -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
done
row b64-int8 -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
date -u
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive > /tmp/s2.log 2>&1; echo "memcheck attention_naive rc=$? $(grep 'ERROR SUMMARY' /tmp/s2.log|tail -1)"
for m in tiny-qwen2 tiny-qwen2-gptq-int4; do
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/$m" > /tmp/p.toml
echo "ppl $m int8:naive: $($k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"; done
date -u
