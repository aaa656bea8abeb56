# Session 16, call A: the KV append and the decode attention read what does not come from the
# previous kernel before their programmatic-dependent-launch wait (slot, rope cos/sin; kv_len, block
# table and the first round of K/V rows), the decode re-reading the step's own key after the wait.
# Suites of the attention and cache plugins and the CUDA model suite; the new late-append case with
# a module that skips the re-read (negative control, must fail); memcheck; then batch-1 / batch-64
# rows against the previous commit's four modules (.carry/old/base, first on KVRUN_PLUGIN_PATH),
# alternating. Also: the two halves of branch l2-evict-first as backend modules (evict-cp: the
# ring's cp.async hint only; evict-ld: the register GEMV's ld hint only) through test_cuda_ops'
# matmul cases, and rows where they pass.
set -uo pipefail
exec > >(tee ${OUT:-.}/session16-a.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/old.tgz -C /tmp/o
O=/tmp/o/old
OUT=/tmp/gc LINES_PER_SUITE=8 timeout 300 scripts/gpu-check.sh test_plugin_attention_naive \
  KVRUN_NAIVE_DECODE_WARPS=1:test_plugin_attention_naive test_plugin_attention_flash \
  KVRUN_FLASH_DECODE=0:test_plugin_attention_flash test_plugin_cache_fp16 test_plugin_cache_int8 test_model_cuda
echo "gpu-check rc=$?"
KVRUN_PLUGIN_PATH=$O/noreload timeout 60 $b/test_plugin_attention_naive -tc='*late*' > /tmp/nr.log 2>&1
echo "negative control (no re-read of the own key) rc=$? (must fail): $(grep -c 'not finite' /tmp/nr.log) non-finite checks; $(grep 'test cases' /tmp/nr.log)"
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive -tc='*late*,*MHA 1:1, head_dim 128*' > /tmp/s.log 2>&1
echo "memcheck attention_naive (late append, MHA 128) rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log | tail -1)"
ok_variants=()
for v in evict-cp evict-ld; do
  KVRUN_PLUGIN_PATH=$O/$v timeout 150 $b/test_cuda_ops -tc='*matmul*,*GEMV*' > /tmp/$v.log 2>&1
  rc=$?
  echo "$v: test_cuda_ops matmul/GEMV cases rc=$rc $(grep 'test cases' /tmp/$v.log | tail -1)"
  grep -m3 -i "illegal\|cudaError" /tmp/$v.log
  [ $rc -eq 0 ] && ok_variants+=($v)
done
row_header
for r in 1 2 3; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=$O/base row "bf16 int8 naive, base modules" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
for s in 1 4 8; do KVRUN_NAIVE_DECODE_SPLITS=$s row "bf16 int8 naive, splits=$s" -c $C/qwen7b-bf16-int8-naive.toml $B1; done
for v in "${ok_variants[@]}"; do
  KVRUN_PLUGIN_PATH=$O/$v row "bf16 int8 naive, $v backend" -c $C/qwen7b-bf16-int8-naive.toml $B1
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
KVRUN_PLUGIN_PATH=$O/base row "gptq int8 naive, base modules" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B1
KVRUN_PLUGIN_PATH=$O/base row "bf16 fp16 flash, base modules" -c $C/qwen7b-bf16-fp16-flash.toml $B1
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B64
KVRUN_PLUGIN_PATH=$O/base row "bf16 int8 naive, base modules" -c $C/qwen7b-bf16-int8-naive.toml $B64
date -u
