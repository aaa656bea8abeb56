# Session 10, prof3: the batch-64 decode step per kernel (~560 keys; graphs off, ncu), and the decode
# kernel's DRAM bytes against its KV bytes.
set -uo pipefail
exec > >(tee ${OUT:-.}/session10-prof3.log) 2>&1
echo "commit $(cat .carry/commit)"; date -u
echo "== batch 64, bf16 weights, int8 cache, naive (prompt 480, a step ~80 in)"
OUT=/tmp/p64 BATCH=64 PROMPT=480 NEW=200 SKIP=40000 COUNT=1500 ATTN=naive CACHE=int8 TOP=30 scripts/gpu-profile.sh
grep -c embedding /tmp/p64/ncu.csv
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
echo "== decode_kernel, batch 64, 545 keys: KV bytes 64·32·545·2·131 = $((64*32*545*2*131))"
ncu --clock-control none -k regex:decode_kernel --launch-skip 32 --launch-count 1 --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sector_hit_rate.pct,dram__throughput.avg.pct_of_peak_sustained_elapsed \
  build-cuda/apps/kvrun bench -c /tmp/d64.toml --batch 64 --prompt-tokens 544 --new-tokens 3 --warmup-tokens 0 2>&1 | grep -E "^    [a-z]"
date -u
