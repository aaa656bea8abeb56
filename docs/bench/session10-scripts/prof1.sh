#!/usr/bin/env bash
# Session 10, call 1: per-kernel decode-step breakdowns (graphs off, ncu) at batch 64 (~550 keys),
# batch 1 bf16 and batch 1 GPTQ, plus detail sections for the attention and GPTQ kernels.
cd /work/main
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
echo "== batch 64, ~550 keys, bf16 int8 naive"
OUT=/tmp/p64 BATCH=64 PROMPT=544 NEW=8 SKIP=1300 COUNT=1300 ATTN=naive CACHE=int8 TOP=30 scripts/gpu-profile.sh
echo "== batch 1 bf16 int8 naive"
OUT=/tmp/p1 ATTN=naive CACHE=int8 TOP=20 scripts/gpu-profile.sh
echo "== batch 1 gptq int8 naive"
OUT=/tmp/pg WEIGHTS=gptq ATTN=naive CACHE=int8 TOP=20 scripts/gpu-profile.sh
echo "== detail: decode_kernel batch 64"
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
ncu --clock-control none -k regex:decode_kernel --launch-skip 40 --launch-count 2 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
  build-cuda/apps/kvrun bench -c /tmp/d64.toml --batch 64 --prompt-tokens 544 --new-tokens 4 --warmup-tokens 0 2>&1 | grep -v '^==PROF' | tail -80
