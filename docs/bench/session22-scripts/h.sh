# Session 22, call H: where gemv1's warps stall — ncu source counters (warp-state samples per SASS
# instruction, real clocks) of one gate·up launch and one q·k·v launch at batch 1, main's code.
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-h.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
timeout 200 ncu --clock-control none --kernel-name regex:gemv1_mma --launch-skip 300 --launch-count 4 \
  --section SourceCounters --section WarpStateStats --section SpeedOfLight -o /tmp/g1rep \
  $k bench -c /tmp/g.toml --batch 1 --prompt-tokens 32 --new-tokens 8 --warmup-tokens 0 > /tmp/ncu.out 2>&1
tail -3 /tmp/ncu.out
ncu -i /tmp/g1rep.ncu-rep --print-summary none --section WarpStateStats --section SourceCounters --section SpeedOfLight > ${OUT:-.}/ncu-g1-stalls.txt 2>&1
grep -E "Duration|DRAM Throughput|Stall|Warp Cycles|Branch|Uncoalesced|Bank" ${OUT:-.}/ncu-g1-stalls.txt | head -60
for id in 0 2; do
  ncu -i /tmp/g1rep.ncu-rep --page source --csv --print-source sass --launch-skip $id --launch-count 1 > ${OUT:-.}/g1-sass-$id.csv 2>&1
  echo "== launch $id: $(wc -l < ${OUT:-.}/g1-sass-$id.csv) lines"; head -2 ${OUT:-.}/g1-sass-$id.csv | cut -c1-400
done
date -u
