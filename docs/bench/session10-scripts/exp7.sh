# Session 10, exp7: the batch-1 GPTQ GEMV with the zero point folded out of its inner loop (branch
# gptq-zero-fold) against main's plugin (.carry/old, first on KVRUN_PLUGIN_PATH), same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session10-exp7.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/t.log 2>&1; echo "weights_gptq rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"; grep -E "ERROR|FAILED" -A8 /tmp/t.log | head -30
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2; do
  row b1-gptq-int8-fold -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_PLUGIN_PATH=$PWD/.carry/old row b1-gptq-int8-main -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p.toml
echo "ppl tiny-qwen2-gptq-int4 int8:naive (fold): $($k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
date -u
