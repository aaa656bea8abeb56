#!/usr/bin/env bash
# Builds variants of one plugin's CUDA object for a same-call A/B on the GPU machine: each NAME=FLAGS
# argument recompiles SRC (a .cu file of the plugin, as the build compiles it) with FLAGS added,
# relinks the plugin with it and leaves the result in .carry/var/NAME/ — run a row there with
# KVRUN_PLUGIN_PATH=.carry/var/NAME (searched before the build's own plugins). Run after
# scripts/gpu-pack.sh; it replaces .carry/var. FLAGS act only through a hook the source leaves,
# such as `#ifndef KVRUN_XF_THREADS / #define KVRUN_XF_THREADS 256 / #endif` around a constant
# (session 24 added such hooks for its calls and removed them after). E.g.
#   scripts/gpu-variants.sh plugins/weights_gptq/kvrun_weights_gptq.so gptq_cuda.cu xf512=-DKVRUN_XF_THREADS=512
set -euo pipefail
cd "$(dirname "$0")/../build-cuda"
export PATH=/usr/local/cuda/bin:$PATH
target=$1 src=$2
shift 2
rm -rf ../.carry/var && mkdir -p ../.carry/var
cmds=$(ninja -t commands "$target")
compile=$(grep -E "nvcc .* -c [^ ]*/$src\$" <<<"$cmds" | tail -1)
obj=$(sed -E 's/.* -o ([^ ]+) -c .*/\1/' <<<"$compile")
link=$(tail -1 <<<"$cmds")
for v in "$@"; do
  name=${v%%=*} flags=${v#*=}
  d=../.carry/var/$name tmp=/tmp/gpu-variants/$name
  rm -rf "$tmp" && mkdir -p "$d" "$tmp"
  eval "${compile/ -o $obj / -o $tmp/$src.o } $flags"
  lib=$(dirname "$obj" | sed 's/\.p$//')
  if [[ "$obj" == *.a.p/* && "$link" == *"$lib"* ]]; then
    # the object lives in a static library the plugin links whole: a library of the variant object
    # alone in its place (the build's libraries hold one object each; checked)
    [ "$(ar t "$lib" | wc -l)" = 1 ] || { echo "gpu-variants: $lib holds more than one object" >&2; exit 1; }
    ar rcs "$tmp/lib.a" "$tmp/$src.o"
    l=${link//$lib/$tmp/lib.a}
  else
    l=${link//$obj/$tmp/$src.o}
  fi
  l=$(sed -E "s# -o [^ ]+# -o $d/$(basename "$target")#" <<<"$l")
  eval "$l"
  echo "variant $name ($flags): $d/$(basename "$target")"
done
