#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root of the copied tree: makes the build's
# compiled-in absolute paths (/work/main/...) resolve, points tests at the carried fixtures, then
# runs the given command. Usage: scripts/gpu-run.sh <command...>
set -uo pipefail
root=$(pwd)
if [ "$root" != /work/main ]; then
  mkdir -p /work && rm -rf /work/main && ln -s "$root" /work/main
fi
if [ -f .carry/build-cuda.tgz ]; then
  mkdir -p build-cuda && tar -xzf .carry/build-cuda.tgz -C build-cuda
fi
export LD_LIBRARY_PATH="$root/.carry/lib:${LD_LIBRARY_PATH:-}"
export KVRUN_FIXTURES="$root/.fixtures/models" KVRUN_DATA="$root/.fixtures/data"
export KVRUN_SOURCE_ROOT=/work/main
mkdir -p /work/shared && ln -sfn "$root/.fixtures/models" /work/shared/models && ln -sfn "$root/.fixtures/data" /work/shared/data
cd /work/main
"$@"
