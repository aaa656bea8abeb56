# Session 18, call B: why the ring kernel with the norm after its sums was slower (call A: 4.14 vs
# 3.85 ms/step). Experimental build: KVRUN_EXP_RING_NORM_MIN_N=N sends only GEMVs of ≥ N rows with
# the norm to the ring (12288: all; 20000: gate·up and lm_head; 100000: lm_head). Then ncu per kernel.
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-b.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit) + KVRUN_EXP_RING_NORM_MIN_N (uncommitted)"; date -u
row_header
for i in 1 2; do
  row "B1 regnorm           " -c $C/qwen7b-bf16-int8-naive.toml $B1 --set generation.overlap=\"off\"
  KVRUN_CUDA_RING_NORM=1 row "B1 ring all          " -c $C/qwen7b-bf16-int8-naive.toml $B1 --set generation.overlap=\"off\"
  KVRUN_EXP_RING_NORM_MIN_N=20000 row "B1 ring gate·up+head " -c $C/qwen7b-bf16-int8-naive.toml $B1 --set generation.overlap=\"off\"
  KVRUN_EXP_RING_NORM_MIN_N=100000 row "B1 ring head         " -c $C/qwen7b-bf16-int8-naive.toml $B1 --set generation.overlap=\"off\"
done
for mode in 0 1; do
  echo "== ncu RING_NORM=$mode"
  KVRUN_CUDA_RING_NORM=$mode timeout 200 ncu --kernel-name regex:gemv --launch-skip 400 --launch-count 140 \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size,launch__registers_per_thread \
    --csv --print-units base $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 8 --set generation.overlap=\"off\" 2>/dev/null \
    | python3 -c '
import csv,sys,collections
rows=[r for r in csv.reader(l for l in sys.stdin if l.startswith("\""))]
h=rows[0]; ix={n:i for i,n in enumerate(h)}
agg=collections.defaultdict(lambda: collections.defaultdict(list))
for r in rows[1:]:
    key=(r[ix["Kernel Name"]][:60], r[ix["Grid Size"]] if "Grid Size" in ix else "")
    agg[r[ix["ID"]]][r[ix["Metric Name"]]]=r[ix["Metric Value"]]; agg[r[ix["ID"]]]["name"]=r[ix["Kernel Name"]][:70]
by=collections.defaultdict(list)
for i,m in agg.items():
    by[(m["name"],m.get("launch__grid_size"))].append((float(m["gpu__time_duration.sum"].replace(",","")),float(m["dram__bytes_read.sum"].replace(",",""))))
for (n,g),v in sorted(by.items()):
    t=sorted(x[0] for x in v)[len(v)//2]; b=sorted(x[1] for x in v)[len(v)//2]
    print(f"{n:70s} grid {g:>6s} n {len(v):3d} median {t:9.0f} ns  read {b/1e6:8.2f} MB  {b/t:6.3f} TB/s")
'
done
date -u
