# Session 11, exp3: the int8 decode's query limbs built once per warp (each of the 4 lanes that
# share a 16-value chunk splits one word, then shuffles; branch naive-decode-qsplit) against main's
# plugin (.carry/old, first on KVRUN_PLUGIN_PATH), same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session11-exp3.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
timeout 200 $b/test_plugin_attention_naive > /tmp/t.log 2>&1
echo "attention_naive rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"; grep -E "ERROR|FAILED" -A10 /tmp/t.log | head -30
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
for P in 32 544 1056; do for v in new main; do
  echo "== decode_kernel batch 64, prompt $P, $v"
  pp=""; [ $v = main ] && pp=$PWD/.carry/old
  KVRUN_PLUGIN_PATH=$pp ncu --clock-control none -k regex:decode_kernel --launch-skip 32 --launch-count 1 --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active \
    $k bench -c /tmp/d64.toml --batch 64 --prompt-tokens $P --new-tokens 3 --warmup-tokens 0 2>&1 | grep -E "^    [a-z]"
done; done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2; do
  row b64-int8-qsplit -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_PLUGIN_PATH=$PWD/.carry/old row b64-int8-main -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
for r in 1 2; do
  row b1-int8-qsplit -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_PLUGIN_PATH=$PWD/.carry/old row b1-int8-main -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2" > /tmp/p.toml
echo "ppl tiny-qwen2 int8:naive (qsplit): $($k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive > /tmp/s.log 2>&1; echo "memcheck attention_naive rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
date -u
