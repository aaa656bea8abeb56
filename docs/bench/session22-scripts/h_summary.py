"""Session 22, call H: sums ncu's warp-stall samples of a gemv1 launch (the CSV of `ncu -i REP --page
source --csv --print-source sass`) over the prologue (before the main loop's first cp.async wait),
the main loop and the epilogue, by stall reason, and lists the hottest instructions.
Usage: python3 h_summary.py g1-sass-0.csv [...]"""
import collections
import csv
import sys


def num(x):
    try:
        return float(x or 0)
    except ValueError:
        return None


for fn in sys.argv[1:]:
    rows = list(csv.reader(open(fn)))
    hdr = rows[1]
    ia, isrc, iad = hdr.index('Warp Stall Sampling (All Samples)'), hdr.index('Source'), hdr.index('Address')
    seen, data = set(), []
    for r in rows[2:]:
        if len(r) == len(hdr) and num(r[ia]) is not None and r[iad] not in seen:
            seen.add(r[iad])
            data.append(r)
    reasons = [h for h in hdr if h.startswith('stall_') and 'Not Issued' not in h]
    lo = next(i for i, r in enumerate(data) if 'DEPBAR.LE SB0, 0x2' in r[isrc])
    hi = max(i for i, r in enumerate(data) if 'HMMA' in r[isrc])
    hi = next(j for j in range(hi, len(data)) if 'BRA' in data[j][isrc] and '@!P0' in data[j][isrc])
    part = collections.Counter()
    by = {k: collections.Counter() for k in ('prologue', 'loop', 'epilogue')}
    for i, r in enumerate(data):
        s = 'prologue' if i < lo else 'loop' if i <= hi else 'epilogue'
        part[s] += num(r[ia])
        for h in reasons:
            by[s][h] += num(r[hdr.index(h)]) or 0
    tot = sum(part.values())
    print(f"{fn}: {tot:.0f} samples; loop {hi - lo + 1} instructions")
    for s in ('prologue', 'loop', 'epilogue'):
        top = ', '.join(f"{h[6:]} {v / tot * 100:.1f}" for h, v in by[s].most_common(6))
        print(f"  {s:9s} {part[s] / tot * 100:5.1f} %  ({top})")
    for r in sorted(data, key=lambda r: -num(r[ia]))[:8]:
        print(f"    {num(r[ia]) / tot * 100:4.1f} %  {r[isrc].strip()[:70]}")
