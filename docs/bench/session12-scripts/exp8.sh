# Session 12, exp7: branch gptq-cap (= gptq-trace + KVRUN_GPTQ_G1_CAP=1: the batch-1 GEMV's shared
# memory padded so no SM holds more than ⌈blocks / SMs⌉ of its blocks). Rows both ways twice, and
# the block timeline with the cap only where it is ≥ 3 (KVRUN_GPTQ_G1_CAP=2).
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-exp8.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench; b=build-cuda/tests
echo "commit $(cat .carry/commit)"; date -u
KVRUN_GPTQ_G1_CAP=1 timeout 60 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/t.log 2>&1; echo "weights_gptq CAP=1 rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  KVRUN_GPTQ_G1_CAP=2 row gptq-b1-cap2 $G
  KVRUN_GPTQ_G1_CAP=0 row gptq-b1-cap0 $G
  KVRUN_GPTQ_G1_CAP=1 row gptq-b1-cap1 $G
done
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
KVRUN_GPTQ_G1_CAP=2 KVRUN_GPTQ_TRACE=/tmp/trace.csv $k generate -c /tmp/g.toml --prompt-ids $(seq -s, 1 32) --max-new-tokens 10 > /tmp/gen.log 2>&1
python3 .carry/trace_summary.py /tmp/trace.csv 3
date -u
