# Session 24, call C: the SwiGLU taken into the 9..64-row kernels' x-fragment kernel (down
# projection; KVRUN_GPTQ_FUSE_SWIGLU=0 keeps the backend's swiglu kernel) — suite, memcheck,
# perplexity, rows; gemm_wg_kernel asked for 2 blocks per SM with two tiles (variant minb2: 128
# registers, spills at 64 rows).
set -uo pipefail
exec > >(tee ${OUT:-.}/session24-c.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "== suite (int8 fixture not carried)"; timeout 200 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases|skipped:" | head -20
echo "== CUDA Linear cases, gemm_tc_kernel"; KVRUN_GPTQ_WGMMA=0 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | grep -E "ERROR|worst|test cases" | head -10
echo "== memcheck"; timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | tail -1
echo "== minb2"; KVRUN_PLUGIN_PATH=.carry/var/minb2 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | grep -E "test cases" | head -2
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for s in 1 0; do echo "ppl window 48, swiglu fused $s: $(KVRUN_GPTQ_FUSE_SWIGLU=$s $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 48 --max-windows 100 2>&1 | tail -1)"; done
echo "ppl window 48, gemm_tc_kernel: $(KVRUN_GPTQ_WGMMA=0 $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 48 --max-windows 100 2>&1 | tail -1)"
date -u
row_header
G="--batch 16,32,48,64 --prompt-tokens 32 --new-tokens 128"
for i in 1 2; do
  row "fused" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_GPTQ_FUSE_SWIGLU=0 row "unfused" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_PLUGIN_PATH=.carry/var/minb2 row "minb2" -c $C/qwen7b-gptq-int8-naive.toml $G
done
row "bf16" -c $C/qwen7b-bf16-int8-naive.toml $G
row "gptq fp16 flash" -c $C/qwen7b-gptq-fp16-flash.toml $G
date -u
