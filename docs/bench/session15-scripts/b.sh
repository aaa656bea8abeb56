# Session 15, call B: stream-K with the shared tiles' segment sums deferred to the end of each warp's
# loop (no fence or atomic while the ring streams) against the static split. Fixture tiny-qwen2-gptq-int4.
set -uo pipefail
exec > >(tee ${OUT:-.}/session15-b.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=4 timeout 200 scripts/gpu-check.sh test_plugin_weights_gptq
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  KVRUN_GPTQ_G1_SK=1 row "gptq int8 naive sk" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_GPTQ_G1_SK=0 row "gptq int8 naive static" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
for bps in 2 3; do KVRUN_GPTQ_G1_SK_BPS=$bps row "gptq int8 naive sk bps=$bps" -c $C/qwen7b-gptq-int8-naive.toml $B1; done
date -u
