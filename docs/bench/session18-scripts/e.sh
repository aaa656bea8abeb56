# Session 18, call E: every kernel of one batch-1 decode step, alone (ncu serializes them: no PDL
# overlap, so these are upper bounds of each kernel's share), for bf16 and GPTQ int4 (int8 KV,
# naive attention, Qwen-7B shape): name, grid, duration, DRAM bytes read, summed per kind.
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-e.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
step() {  # $1 config; the 4th decode step's kernels (prefill + 3 steps skipped by count)
  local cfg=$1 skip=$2 count=$3
  timeout 280 ncu --launch-skip $skip --launch-count $count \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,launch__block_size \
    --csv --print-units base $k bench -c $C/$cfg --batch 1 --prompt-tokens 32 --new-tokens 16 2>/dev/null \
    | python3 -c '
import csv,sys,collections
rows=[r for r in csv.reader(l for l in sys.stdin if l.startswith("\""))]
h=rows[0]; ix={n:i for i,n in enumerate(h)}
agg=collections.OrderedDict()
for r in rows[1:]:
    m=agg.setdefault(r[ix["ID"]],{}); m[r[ix["Metric Name"]]]=r[ix["Metric Value"]]; m["name"]=r[ix["Kernel Name"]].split("(")[0][-60:]
f=lambda m,k: float(m.get(k,"0").replace(",",""))
by=collections.OrderedDict(); tot=0; totb=0
for i,m in agg.items():
    key=(m["name"],m.get("launch__grid_size"),m.get("launch__block_size"))
    e=by.setdefault(key,[0,0.0,0.0,0.0]); e[0]+=1; e[1]+=f(m,"gpu__time_duration.sum"); e[2]+=f(m,"dram__bytes_read.sum"); e[3]+=f(m,"dram__bytes_write.sum")
    tot+=f(m,"gpu__time_duration.sum"); totb+=f(m,"dram__bytes_read.sum")
print(f"{len(agg)} kernels, {tot/1e3:.1f} us summed, {totb/1e9:.3f} GB read, {totb/tot/1e3:.3f} TB/s")
for (n,g,b),(c,t,rd,wr) in by.items():
    print(f"{n:60s} grid {g:>6s} x {b:>4s}  n {c:3d}  {t/1e3:8.1f} us total  {t/c/1e3:7.2f} us each  read {rd/c/1e6:8.2f} MB  {rd/t/1e3 if t else 0:6.3f} TB/s")
'
}
echo "== bf16 int8 naive: one decode step"; step qwen7b-bf16-int8-naive.toml 1500 460
echo "== gptq int8 naive: one decode step"; step qwen7b-gptq-int8-naive.toml 1500 460
date -u
