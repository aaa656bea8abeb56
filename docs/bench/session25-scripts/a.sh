# Session 25, call A: cuBLASLt's kernels launched early in captured graphs (KVRUN_CUDA_LIB_PDL).
# The probe's verdict per plan and the edges promoted; the SASS of the nvjet kernels (do they hold
# griddepcontrol's ACQBULK / PREEXIT?); same-call A/B of the decode rows with it on and off; the
# CUDA ops and model suites with it on.
set -uo pipefail
exec > >(tee ${OUT:-.}/session25-a.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,driver_version --format=csv,noheader
echo "== probe and promotion log (batch 64, bf16 + int8 KV)"
KVRUN_CUDA_LT_TUNE_LOG=1 timeout 120 $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 16 2>&1 |
  grep -E "PDL probe|graph capture|^ +64 " | cut -c1-400 | sort | uniq -c | head -30
date -u
row_header
for i in 1 2; do
  row "lib_pdl=1" -c $C/qwen7b-bf16-int8-naive.toml $B64
  KVRUN_CUDA_LIB_PDL=0 row "lib_pdl=0" -c $C/qwen7b-bf16-int8-naive.toml $B64
done
S="--batch 4,16,32,100 --prompt-tokens 32 --new-tokens 256"
row "lib_pdl=1" -c $C/qwen7b-bf16-int8-naive.toml $S
KVRUN_CUDA_LIB_PDL=0 row "lib_pdl=0" -c $C/qwen7b-bf16-int8-naive.toml $S
row "lib_pdl=1 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
KVRUN_CUDA_LIB_PDL=0 row "lib_pdl=0 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
row "lib_pdl=1 B1" -c $C/qwen7b-bf16-int8-naive.toml $B1
date -u
echo "== suites"
timeout 150 $b/test_cuda_ops 2>&1 | grep -E "ERROR|FAIL|test cases|skipped" | head -12
timeout 200 $b/test_model_cuda 2>&1 | grep -E "ERROR|FAIL|test cases|skipped" | head -12
date -u
echo "== ncu SASS of the nvjet kernels"
ncu --help 2>&1 | grep -i -E "print-source|--page" | head -6
timeout 150 ncu --clock-control none -k regex:nvjet -c 5 --page source --print-source sass --csv \
  $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 2 --warmup-tokens 0 > /tmp/sass.csv 2> /tmp/sass.err
echo "rc $? lines $(wc -l < /tmp/sass.csv)"; tail -3 /tmp/sass.err
grep -o -E '"(Kernel Name|Function Name)","[^"]*"|nvjet_sm90[A-Za-z0-9_]*' /tmp/sass.csv | sort | uniq -c | head
grep -o -E 'ACQBULK|PREEXIT|DEPBAR[^",]*|griddepcontrol[^",]*' /tmp/sass.csv | sort | uniq -c
head -c 1500 /tmp/sass.csv; echo
gzip -c /tmp/sass.csv > ${OUT:-.}/session25-a-sass.csv.gz
date -u
