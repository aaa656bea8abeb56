# Session 18, call C: the RMSNorm-fused register GEMV (q·k·v, gate·up) with 8 rows per warp (one
# 16-byte load per row in flight per lane; gate·up in one wave of 344 blocks) and forced K splits.
# Experimental build (uncommitted): KVRUN_EXP_NORM_RPW=8, KVRUN_EXP_NORM_WPR=N.
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-c.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit) + KVRUN_EXP_NORM_RPW/WPR (uncommitted)"; date -u
row_header
for i in 1 2; do
  row "B1 default        " -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_EXP_NORM_RPW=8 row "B1 rpw8 auto      " -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_EXP_NORM_RPW=8 KVRUN_EXP_NORM_WPR=1 row "B1 rpw8 wpr1      " -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_EXP_NORM_WPR=2 row "B1 rpw4 wpr2      " -c $C/qwen7b-bf16-int8-naive.toml $B1
done
ncu_norm() {
  timeout 200 ncu --kernel-name regex:gemv_kernel --launch-skip 200 --launch-count 40 \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size \
    --csv --print-units base $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 8 2>/dev/null \
    | python3 -c '
import csv,sys,collections
rows=[r for r in csv.reader(l for l in sys.stdin if l.startswith("\""))]
h=rows[0]; ix={n:i for i,n in enumerate(h)}
agg=collections.defaultdict(dict)
for r in rows[1:]:
    agg[r[ix["ID"]]][r[ix["Metric Name"]]]=r[ix["Metric Value"]]; agg[r[ix["ID"]]]["name"]=r[ix["Kernel Name"]][:60]
by=collections.defaultdict(list)
for i,m in agg.items():
    by[(m["name"],m.get("launch__grid_size"))].append((float(m["gpu__time_duration.sum"].replace(",","")),float(m["dram__bytes_read.sum"].replace(",",""))))
for (n,g),v in sorted(by.items()):
    t=sorted(x[0] for x in v)[len(v)//2]; b=sorted(x[1] for x in v)[len(v)//2]
    print(f"{n:60s} grid {g:>6s} n {len(v):3d} median {t:9.0f} ns  read {b/1e6:8.2f} MB  {b/t:6.3f} TB/s")
'
}
echo "== ncu default"; ncu_norm
echo "== ncu rpw8 wpr1"; KVRUN_EXP_NORM_RPW=8 KVRUN_EXP_NORM_WPR=1 ncu_norm
echo "== ncu rpw8 auto"; KVRUN_EXP_NORM_RPW=8 ncu_norm
date -u
