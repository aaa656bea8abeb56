#!/usr/bin/env python3
"""Summarises an `ncu --csv` run of kvrun (scripts/gpu-profile.sh): the kernels of the last complete
decode step (between the last two embedding kernels), grouped by name and grid size, with their
DRAM traffic when the run collected dram__bytes_read/write. Usage: ncu-summary.py FILE.csv [TOP]"""
import collections
import csv
import sys

SCALE = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "ns": 1, "us": 1e3, "usecond": 1e3, "nsecond": 1,
         "msecond": 1e6, "ms": 1e6}
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr, rows = rows[0], rows[1:]
iid, iname, imet, iunit, ival, igrid = (hdr.index(h) for h in
                                        ("ID", "Kernel Name", "Metric Name", "Metric Unit", "Metric Value", "Grid Size"))
per = collections.OrderedDict()
for r in rows:
    k = per.setdefault(r[iid], {"name": r[iname], "grid": r[igrid].replace(" ", "")})
    k[r[imet]] = float(r[ival].replace(",", "")) * SCALE.get(r[iunit], 1)
ks = list(per.values())
starts = [i for i, k in enumerate(ks) if "embedding" in k["name"]]
step = ks[starts[-2]:starts[-1]] if len(starts) >= 2 else ks
tot, cnt, byt = collections.Counter(), collections.Counter(), collections.Counter()
for k in step:
    name = k["name"].replace("(anonymous namespace)::", "").replace("<unnamed>::", "")  # ncu spells it both ways
    key = name.split("(")[0].split("<")[0][-40:] + " grid" + k["grid"]
    tot[key] += k.get("gpu__time_duration.sum", 0.0)
    cnt[key] += 1
    byt[key] += k.get("dram__bytes_read.sum", 0.0) + k.get("dram__bytes_write.sum", 0.0)
alln = sum(tot.values())
print(f"decode step: {len(step)} kernels, {alln / 1e6:.3f} ms of kernel time")
for key, v in tot.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 18):
    print(f"  {v / 1e6:8.3f} ms {100 * v / alln:5.1f} %  x{cnt[key]:4d}  {byt[key] / max(v, 1) / 1e3:5.2f} TB/s  {key}")
