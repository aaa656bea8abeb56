# Session 12, exp5: build-cuda = branch gptq-f16 (the batch-1 GEMV on f16 fragments: one shift per
# word, x as f16 hi + lo with a per-block power-of-two scale); .carry/main = main's plugin (lean +
# trigger at start). Suite, perplexity, memcheck, rows three times, ncu per Linear.
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-exp5.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_plugin_weights_gptq > /tmp/t.log 2>&1
echo "weights_gptq rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"; grep -E "ERROR|FAILED" -A12 /tmp/t.log | head -40
timeout 200 $b/test_model_cuda > /tmp/m.log 2>&1; echo "test_model_cuda rc=$? $(grep 'test cases' /tmp/m.log | tail -1)"; grep -iE "gptq" /tmp/m.log | head -8
for v in f16 main; do
  pp=""; [ $v = main ] && pp=$PWD/.carry/main
  printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p.toml
  echo "ppl tiny-qwen2-gptq-int4 int8:naive ($v): $(KVRUN_PLUGIN_PATH=$pp $k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"
done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2 3; do
  row b1-gptq-f16 $G
  KVRUN_PLUGIN_PATH=$PWD/.carry/main row b1-gptq-main $G
done
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for v in f16 main; do
  pp=""; [ $v = main ] && pp=$PWD/.carry/main
  echo "== gemv1 per Linear (q·k·v, o, gate·up, down), $v"
  KVRUN_PLUGIN_PATH=$pp ncu --clock-control none -k regex:gemv1 --launch-skip 128 --launch-count 4 --metrics gpu__time_duration.sum,smsp__inst_executed.sum \
    $k generate -c /tmp/g.toml --prompt-ids 1,2,3,4 --max-new-tokens 4 2>&1 | grep -E "^    [a-z]"
done
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
date -u
