set -uo pipefail
exec > >(tee ${OUT:-.}/session25-b.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "== bench batch 64, lib pdl on: stderr"
timeout 120 $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 16 2>&1 | grep -v "progress\|\r" | tail -15
echo "rc ${PIPESTATUS[0]}"
KVRUN_CUDA_LIB_PDL=1 timeout 120 $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 16 --prompt-tokens 32 --new-tokens 16 --set generation.overlap=off 2>&1 | tail -4
echo "== negative control"
.carry/pdl_edge_check
echo "== ncu SASS of the decode nvjet kernels"
KVRUN_CUDA_LIB_PDL=0 timeout 200 ncu --clock-control none -k 'regex:nvjet_sm90_tss_(96x64|168x64|64x32)' -c 3 --page source --print-source sass --csv \
  $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 2 --warmup-tokens 0 > /tmp/sass.csv 2> /tmp/sass.err
echo "rc $? lines $(wc -l < /tmp/sass.csv)"; tail -2 /tmp/sass.err
grep '"Kernel Name"' /tmp/sass.csv
grep -o -E 'ACQBULK|PREEXIT|griddepcontrol[^",]*' /tmp/sass.csv | sort | uniq -c
gzip -c /tmp/sass.csv > ${OUT:-.}/session25-b-sass.csv.gz
date -u
