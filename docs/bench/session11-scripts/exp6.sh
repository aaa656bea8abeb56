# Session 11, exp6: the int8 decode kernel's sequence length, first block id and warp 0's first K
# rows loaded before the PDL wait (branch naive-decode-early; KVRUN_NAIVE_DECODE_EARLY=0: every
# load after it, as on main), same call. The same arithmetic: outputs must be bit-identical.
set -uo pipefail
exec > >(tee ${OUT:-.}/session11-exp6.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2" > /tmp/p.toml
for v in 1 0; do
  KVRUN_NAIVE_DECODE_EARLY=$v timeout 60 $k generate -c /tmp/p.toml --prompt 'def fibonacci(n):' --max-new-tokens 200 > /tmp/g$v.txt 2>/dev/null
  echo "generate EARLY=$v rc=$? $(md5sum < /tmp/g$v.txt)"
done
cmp /tmp/g1.txt /tmp/g0.txt && echo "generate: identical"
timeout 60 $b/test_plugin_attention_naive > /tmp/t.log 2>&1; echo "attention_naive rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"; grep -E "ERROR|FAILED" -A10 /tmp/t.log | head -20
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for v in 1 0; do
  KVRUN_NAIVE_DECODE_EARLY=$v row b64-int8-early$v -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
for v in 1 0; do
  KVRUN_NAIVE_DECODE_EARLY=$v row b1-int8-early$v -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done
timeout 100 $b/test_model_cuda -tc='tiny-qwen2*' > /tmp/m.log 2>&1; echo "test_model_cuda tiny-qwen2 rc=$? $(grep 'test cases' /tmp/m.log | tail -1)"; grep -E "int8/naive|ERROR|FAILED" /tmp/m.log | head -12
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
for v in 1 0; do
  echo "== decode_kernel batch 64, prompt 544, EARLY=$v"
  KVRUN_NAIVE_DECODE_EARLY=$v ncu --clock-control none -k regex:decode_kernel --launch-skip 32 --launch-count 1 --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \
    $k bench -c /tmp/d64.toml --batch 64 --prompt-tokens 544 --new-tokens 3 --warmup-tokens 0 2>&1 | grep -E "^    [a-z]"
done
date -u
