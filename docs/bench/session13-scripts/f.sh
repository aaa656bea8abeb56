# Session 13, call F: branch gptq-perm-fuse — the batch-1 GPTQ kernel reads act-order x through
# perm (norm fused, no gather kernel). Fixtures tiny-qwen2-gptq-int4 and -int8. The GPTQ suite
# (act-order fused cases) plain and its CUDA cases under memcheck, perplexity, then rows: the
# usual qwen-7b GPTQ row (no act-order: unchanged?) and synthetic act-order layouts
# (KVRUN_GPTQ_SYNTHETIC_ACT_ORDER=1, parts apart as act-order checkpoints load them) with the
# in-kernel gather (KVRUN_GPTQ_G1_GATHER=1) against the gather kernel + unfused norm (=0).
set -uo pipefail
exec > >(tee ${OUT:-.}/session13-f.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=12 timeout 200 scripts/gpu-check.sh test_plugin_weights_gptq; echo "gpu-check rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p.toml
echo "ppl tiny-qwen2-gptq-int4 int8:naive: $($k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
printf '[model]\nsynthetic = "qwen2.5-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\nmemory_limit = "80GB"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' > /tmp/q25g.toml
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
for r in 1 2; do
  row "qwen-7b gptq b1" -c $C/qwen7b-gptq-int8-naive.toml $B1
  for g in 0 1; do
    KVRUN_JOIN_LINEARS=0 KVRUN_GPTQ_SYNTHETIC_ACT_ORDER=1 KVRUN_GPTQ_G1_GATHER=$g row "qwen-7b gptq act-order b1 gather-in-kernel=$g" -c $C/qwen7b-gptq-int8-naive.toml $B1
    KVRUN_JOIN_LINEARS=0 KVRUN_GPTQ_SYNTHETIC_ACT_ORDER=1 KVRUN_GPTQ_G1_GATHER=$g row "qwen2.5-7b gptq act-order b1 gather-in-kernel=$g" -c /tmp/q25g.toml $B1
  done
done
date -u
