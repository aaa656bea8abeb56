# Prepared in session 12, not run (device time spent): branch gptq-queue — gemv1_q_kernel, the
# batch-1 GPTQ GEMV as persistent blocks taking units (one column tile, 8 warps over k) from a
# per-Linear counter (KVRUN_GPTQ_G1_QUEUE=1; default 0), against gemv1_mma_kernel in the same
# build. Build: git checkout gptq-queue && scripts/gpu-pack.sh tiny-qwen2-gptq-int4 &&
# git rev-parse HEAD > .carry/commit; copy this script to .carry; then
# scripts/gpu-run.sh bash .carry/next-gptq-queue.sh (~3 minutes).
set -uo pipefail
exec > >(tee ${OUT:-.}/session13-gptq-queue.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/t.toml
for q in 0 1; do
  echo "== block timeline (KVRUN_GPTQ_TRACE), queue $q"
  KVRUN_GPTQ_G1_QUEUE=$q KVRUN_GPTQ_TRACE=/tmp/trace$q.csv $k generate -c /tmp/t.toml --prompt-ids $(seq -s, 1 32) --max-new-tokens 10 > /tmp/gen$q.log 2>&1
  python3 docs/bench/session12-scripts/trace_summary.py /tmp/trace$q.csv 3
done
date -u
for e in "KVRUN_GPTQ_G1_QUEUE=0" "KVRUN_GPTQ_G1_QUEUE=1 KVRUN_GPTQ_G1_QUEUE_BLOCKS=3" "KVRUN_GPTQ_G1_QUEUE=1"; do
  env $e timeout 150 $b/test_plugin_weights_gptq > /tmp/t.log 2>&1
  echo "weights_gptq [$e] rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"; grep -E "ERROR|FAILED|worst" -A6 /tmp/t.log | head -30
done
env KVRUN_GPTQ_G1_QUEUE=1 KVRUN_GPTQ_G1_QUEUE_BLOCKS=3 timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 \
  $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck queue rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log | tail -1)"
env KVRUN_GPTQ_G1_QUEUE=1 timeout 200 compute-sanitizer --tool racecheck --error-exitcode 9 \
  $b/test_plugin_weights_gptq -tc='CUDA Linear matches*' > /tmp/r.log 2>&1; echo "racecheck queue rc=$? $(grep 'ERROR SUMMARY' /tmp/r.log | tail -1)"
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p.toml
for q in 0 1; do echo "ppl tiny-qwen2-gptq-int4 (queue $q): $(KVRUN_GPTQ_G1_QUEUE=$q $k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"; done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2 3; do
  KVRUN_GPTQ_G1_QUEUE=0 row gptq-b1-static $G
  KVRUN_GPTQ_G1_QUEUE=1 row gptq-b1-queue $G
done
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for q in 0 1; do
  echo "== gemv1 per Linear (q·k·v, o, gate·up, down), queue $q"
  KVRUN_GPTQ_G1_QUEUE=$q ncu --clock-control none -k regex:gemv1 --launch-skip 128 --launch-count 4 --metrics gpu__time_duration.sum,launch__grid_size \
    $k generate -c /tmp/g.toml --prompt-ids 1,2,3,4 --max-new-tokens 4 2>&1 | grep -E "^    [a-z]"
done
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/t.toml
for q in 0 1; do
  echo "== block timeline (KVRUN_GPTQ_TRACE), queue $q"
  KVRUN_GPTQ_G1_QUEUE=$q KVRUN_GPTQ_TRACE=/tmp/trace$q.csv $k generate -c /tmp/t.toml --prompt-ids $(seq -s, 1 32) --max-new-tokens 10 > /tmp/gen$q.log 2>&1
  python3 docs/bench/session12-scripts/trace_summary.py /tmp/trace$q.csv 3
done
date -u
