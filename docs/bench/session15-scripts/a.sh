# Session 15, call A: the batch-1 GPTQ kernel's stream-K split (KVRUN_GPTQ_G1_SK, default on) against
# the static split, same build. Fixtures tiny-qwen2-gptq-int4 and -int8. The GPTQ suite both ways and
# under memcheck, perplexity both ways, then the rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session15-a.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u; nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
OUT=/tmp/gc LINES_PER_SUITE=12 timeout 200 scripts/gpu-check.sh test_plugin_weights_gptq KVRUN_GPTQ_G1_SK=0:test_plugin_weights_gptq
echo "gpu-check rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*fused*' > /tmp/r.log 2>&1; echo "racecheck weights_gptq fused rc=$? $(grep 'ERROR SUMMARY' /tmp/r.log|tail -1)"
for m in tiny-qwen2-gptq-int4 tiny-qwen2-gptq-int8; do
  for pipe in int8:naive fp16:flash; do
    printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "%s"\n[attention]\nkind = "%s"\n' "$KVRUN_FIXTURES/$m" ${pipe%%:*} ${pipe##*:} > /tmp/p.toml
    for v in 1 0; do echo "ppl $m $pipe sk=$v: $(KVRUN_GPTQ_G1_SK=$v $k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"; done
  done
  printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/$m" > /tmp/g.toml
  for v in 1 0; do echo "greedy $m sk=$v: $(KVRUN_GPTQ_G1_SK=$v $k generate -c /tmp/g.toml --prompt 'def fib(n):' --max-new-tokens 24 2>/dev/null | md5sum)"; done
done
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B1="--batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  KVRUN_GPTQ_G1_SK=1 row "gptq int8 naive sk" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_GPTQ_G1_SK=0 row "gptq int8 naive static" -c $C/qwen7b-gptq-int8-naive.toml $B1
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
for bps in 1 2 3 4; do KVRUN_GPTQ_G1_SK_BPS=$bps row "gptq int8 naive sk bps=$bps" -c $C/qwen7b-gptq-int8-naive.toml $B1; done
KVRUN_GPTQ_G1_SK=1 row "gptq fp16 flash sk" -c $C/qwen7b-gptq-fp16-flash.toml $B1
KVRUN_GPTQ_G1_SK=0 row "gptq fp16 flash static" -c $C/qwen7b-gptq-fp16-flash.toml $B1
KVRUN_LOG=debug $k bench -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 8 2>&1 | grep -i "gptq\|plan" | head -20
date -u
