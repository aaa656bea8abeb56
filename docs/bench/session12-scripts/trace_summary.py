#!/usr/bin/env python3
"""Summarize a KVRUN_GPTQ_TRACE file (branch gptq-trace): one line per batch-1 GPTQ GEMV launch
position in a decode step (q·k·v, o, gate·up, down of each layer), medians over the steps.
Times in µs. Columns:
  gap      this launch's first PDL-wait return − the previous GEMV launch's last block end
           (the kernels between them: RoPE, KV append, attention before o; SwiGLU before down)
  early    median block: PDL-wait return − block start (how long its prologue waited)
  prolog   median block: main-loop start − PDL-wait return (x read, Σx², conversion, barriers)
  loop     median block: end − main-loop start
  spread   last block end − first block end (imbalance of the grid's blocks)
  span     last block end − first PDL-wait return
Usage: trace_summary.py FILE [steps to skip at the start]"""
import csv, statistics as st, sys
from collections import defaultdict

recs = defaultdict(list)
for r in csv.DictReader(open(sys.argv[1])):
    recs[int(r['id'])].append(tuple(int(r[k]) for k in ('t_start', 't_wait', 't_loop', 't_end')) + (int(r['sm']),))
skip = int(sys.argv[2]) if len(sys.argv) > 2 else 2
inst = []  # (first wait, id, blocks)
for i, rs in recs.items():
    rs.sort(key=lambda x: x[1])
    cur = [rs[0]]
    for x in rs[1:]:
        if x[1] - cur[-1][1] > 30000:  # 30 µs between waits: the next step's launch
            inst.append((cur[0][1], i, cur)); cur = [x]
        else:
            cur.append(x)
    inst.append((cur[0][1], i, cur))
inst.sort()
# decode steps: every launch of a step has a distinct id; a step = the run of launches until an id repeats
steps, cur, seen = [], [], set()
for w, i, b in inst:
    if i in seen:
        steps.append(cur); cur, seen = [], set()
    cur.append((i, b)); seen.add(i)
steps.append(cur)
n = min(len(s) for s in steps[skip:-1]) if len(steps) > skip + 1 else 0
print(f"{len(inst)} launches, {len(steps)} steps, {n} launches per step used; skipping {skip} steps")
names = ['qkv', 'o', 'gate_up', 'down']
rows = defaultdict(lambda: defaultdict(list))
prev_end = None
for s in steps[skip:-1]:
    prev_end = None
    for pos, (i, b) in enumerate(s[:n]):
        med = lambda k: st.median(x[k] for x in b)
        first_wait = min(x[1] for x in b)
        ends = [x[3] for x in b]
        d = rows[pos]
        if prev_end is not None: d['gap'].append((first_wait - prev_end) / 1e3)
        d['early'].append(st.median(x[1] - x[0] for x in b) / 1e3)
        d['prolog'].append(st.median(x[2] - x[1] for x in b) / 1e3)
        d['loop'].append(st.median(x[3] - x[2] for x in b) / 1e3)
        d['spread'].append((max(ends) - min(ends)) / 1e3)
        d['span'].append((max(ends) - first_wait) / 1e3)
        d['blocks'].append(len(b))
        prev_end = max(ends)
cols = ['gap', 'early', 'prolog', 'loop', 'spread', 'span']
print(f"{'pos':>4} {'linear':8} {'blocks':>6} " + ' '.join(f'{c:>7}' for c in cols))
tot = defaultdict(float)
for pos in sorted(rows):
    d = rows[pos]
    vals = {c: (st.median(d[c]) if d[c] else 0.0) for c in cols}
    for c in cols: tot[(pos % 4, c)] += vals[c]
    if pos < 8 or pos >= n - 4:
        print(f"{pos:4d} {names[pos % 4]:8} {int(st.median(d['blocks'])):6d} " + ' '.join(f'{vals[c]:7.2f}' for c in cols))
print("per step, summed over the layers (µs):")
for k in range(4):
    print(f"     {names[k]:8}        " + ' '.join(f'{tot[(k, c)]:7.1f}' for c in cols))
