#!/usr/bin/env python3
# Simulation of gemv1_q_kernel's scheduling protocol (branch gptq-queue): warps of each block run
# their instruction streams in random interleavings between barriers; blocks interleave freely.
# Checks every shared-memory read against what the protocol promises.
import random, sys

def run(units, grid, ks, KC, seed):
    rnd = random.Random(seed)
    W = 8; tiles = W // ks; NTp = units * tiles - rnd.randint(0, tiles - 1)
    ctr = [0, 0]
    maxshare = (KC + ks - 1) // ks; ns = (maxshare + 1) // 2
    assert KC // ks >= 8
    done_units = []
    y_writes = {}
    blocks = []
    for b in range(grid):
        blk = dict(ids=[None] * 3, sze=[None, None], red=[[None] * W for _ in range(2)], barrier_count=0)
        blocks.append(blk)
    def claim():
        c = ctr[0]; ctr[0] += 1
        u = 2 * grid + c
        return u if u < units else -1
    # generator per warp yielding 'barrier' at each __syncthreads
    def warp_prog(b, w):
        blk = blocks[b]
        tile, part = w // ks, w % ks
        c_begin = KC * part // ks; nck = KC * (part + 1) // ks - c_begin
        u0 = b; u1 = b + grid if b + grid < units else -1
        def unit_at(k):
            if k == 0: return u0
            if k == 1: return u1
            v = blk['ids'][k % 3]
            assert v is not None and v[0] == k, f"ids[{k%3}] holds {v} when unit {k} is read"
            return v[1]
        ring = [None] * 4
        ld = dict(k=0, j=0, unit=u0)
        def load_stage(s):
            if ld['j'] == ns:
                ld['k'] += 1; ld['j'] = 0; ld['unit'] = unit_at(ld['k'])
            ring[s & 3] = (ld['k'], ld['unit'], ld['j'])
            ld['j'] += 1
        for s in range(3):
            load_stage(s)
        szr = ('unit', u0)
        yield 'step'
        # prologue barrier: sz_store(0)
        blk['sze'][0] = szr
        yield 'barrier'
        s = 0; unit = u0; k = 0
        while True:
            if w == 0:
                blk['ids'][(k + 2) % 3] = (k + 2, claim())
            yield 'step'
            szr = ('unit', unit_at(k + 1))
            nt = unit * tiles + tile; active = nt < NTp
            assert blk['sze'][k & 1] == ('unit', unit), f"sze slot {k&1} holds {blk['sze'][k&1]} for unit {unit}"
            for j in range(ns):
                load_stage(s + 3)
                got = ring[s & 3]
                assert got == (k, unit, j), f"ring slot {s&3} holds {got}, consumer wants {(k, unit, j)}"
                # slot (s+3)&3 written after reading s-1: check we did not clobber s
                s += 1
                if rnd.random() < 0.3: yield 'step'
            blk['red'][k & 1][w] = (unit, w)
            blk['sze'][(k + 1) & 1] = szr
            yield 'barrier'
            if part == 0 and active:
                for p in range(ks):
                    assert blk['red'][k & 1][w + p] == (unit, w + p), f"red {blk['red'][k&1][w+p]} for unit {unit}"
                key = (unit, tile)
                assert key not in y_writes, f"y of {key} written twice"
                y_writes[key] = b
                if w == 0: pass
            if w == 0: done_units.append(unit)
            if rnd.random() < 0.5: yield 'step'
            unit = unit_at(k + 1)
            k += 1
            if unit < 0: break
        yield 'exit'
    progs = {(b, w): warp_prog(b, w) for b in range(grid) for w in range(W)}
    state = {key: 'run' for key in progs}
    at_barrier = {b: set() for b in range(grid)}
    exited = 0
    while progs:
        key = rnd.choice(list(progs))
        b, w = key
        if state[key] == 'wait': continue
        ev = next(progs[key])
        if ev == 'barrier':
            state[key] = 'wait'; at_barrier[b].add(w)
            if len(at_barrier[b]) == sum(1 for kk in progs if kk[0] == b):
                for ww in at_barrier[b]: state[(b, ww)] = 'run'
                at_barrier[b] = set()
        elif ev == 'exit':
            del progs[key]
    assert sorted(done_units) == list(range(units)), (sorted(done_units), units)
    for u in range(units):
        for t in range(tiles):
            if u * tiles + t < NTp: assert (u, t) in y_writes
    return True

n = 0
for seed in range(400):
    rnd = random.Random(seed)
    ks = rnd.choice([1, 2, 4, 8]); KC = rnd.choice([8, 16, 17, 64, 172]) * ks
    units = rnd.randint(1, 40); grid = rnd.randint(1, units)
    run(units, grid, ks, KC, seed); n += 1
print("ok", n, "random schedules")
