#!/usr/bin/env bash
# Session 10, call 2: the batch-64 decode step (~550 keys) per kernel, and the decode kernel's SOL.
cd /work/main
echo "== batch 64, ~550 keys, bf16 int8 naive (decode step)"
OUT=/tmp/p64 BATCH=64 PROMPT=544 NEW=16 SKIP=3000 COUNT=2000 ATTN=naive CACHE=int8 TOP=30 scripts/gpu-profile.sh
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
echo "== detail: decode_kernel batch 64"
ncu --clock-control none -k regex:decode_kernel --launch-skip 40 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis \
  build-cuda/apps/kvrun bench -c /tmp/d64.toml --batch 64 --prompt-tokens 544 --new-tokens 4 --warmup-tokens 0 2>&1 | grep -v '^==PROF' | grep -E 'Duration|Throughput|Busy|Bandwidth|Hit|Elapsed|Memory \[' 
