# Session 22, call J: call H again on the kept prologue (commit 21b9732): ncu's warp-state samples of
# gemv1 alone, q·k·v and gate·up, summed by part of the kernel (h_summary.py).
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-j.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
timeout 200 ncu --clock-control none --kernel-name regex:gemv1_mma --launch-skip 300 --launch-count 4 \
  --section SourceCounters --section WarpStateStats --section SpeedOfLight -o /tmp/g1rep \
  $k bench -c /tmp/g.toml --batch 1 --prompt-tokens 32 --new-tokens 8 --warmup-tokens 0 > /tmp/ncu.out 2>&1
ncu -i /tmp/g1rep.ncu-rep --print-summary none --section WarpStateStats --section SourceCounters --section SpeedOfLight > /tmp/st.txt 2>&1
grep -E "Duration|DRAM Throughput|Warp Cycles Per Issued|excessive" /tmp/st.txt | head -30
for id in 0 2; do ncu -i /tmp/g1rep.ncu-rep --page source --csv --print-source sass --launch-skip $id --launch-count 1 > /tmp/g1-sass-$id.csv 2>&1; done
python3 docs/bench/session22-scripts/h_summary.py /tmp/g1-sass-0.csv /tmp/g1-sass-2.csv
date -u
