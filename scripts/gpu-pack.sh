#!/usr/bin/env bash
# Prepares what a run on the GPU machine needs and cannot find there (see docs/GPU.md):
#   build-cuda/   this tree built here with -Dcuda=enabled (sm_80 + sm_90)
#   .carry/lib/   shared libraries the GPU machine lacks (toml++, utf8proc)
#   .fixtures/    copies of the fixture models named on the command line (../shared does not travel)
# Usage: scripts/gpu-pack.sh [model ...]      e.g. scripts/gpu-pack.sh tiny-qwen2 tiny-qwen1
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/cuda/bin:$PATH
[ -f build-cuda/build.ninja ] || meson setup build-cuda -Dcuda=enabled
# Meson 1.0 declares a depfile for nvcc but does not ask nvcc to write one, so a .cu object is not
# rebuilt when only a header it includes changed (a stale CudaOps default once reached the GPU
# this way). Drop every CUDA object older than the newest header; ninja rebuilds them.
newest=$(find core/include backends plugins \( -name '*.cuh' -o -name '*.hpp' -o -name '*.h' \) -printf '%T@ %p\n' |
  sort -n | tail -1 | cut -d' ' -f2-)
[ -n "$newest" ] && find build-cuda -name '*.cu.o' ! -newer "$newest" -delete
ninja -C build-cuda
# Every kernel launched with programmatic dependent launch must wait on the device for the kernel
# before it (scripts/pdl-audit.py: its SASS must hold griddepcontrol.wait). Needs cuobjdump and
# nvdisasm, which not every CUDA install has (docs/GPU.md says where to get them).
if command -v cuobjdump >/dev/null && command -v nvdisasm >/dev/null; then
  python3 scripts/pdl-audit.py build-cuda
else
  echo "gpu-pack: cuobjdump or nvdisasm not on PATH: the PDL audit (scripts/pdl-audit.py) did not run" >&2
fi
mkdir -p .carry/lib
# Only the linked outputs travel (objects stay here): shared objects, executables — less the test
# executables that have no GPU case (scripts/gpu-check.sh runs none of them), ~2 MB of the 64 MiB a
# call may carry; KVRUN_PACK_CPU_TESTS=1 keeps them.
cpu_only=()
if [ "${KVRUN_PACK_CPU_TESTS:-0}" != 1 ]; then
  for t in test_core_\* test_fuzz_regressions test_model_cpu test_cpu_ops test_bench test_cli test_tokenizer \
           test_sdk test_errors test_checkpoint; do cpu_only+=(! -name "$t"); done
fi
(cd build-cuda && find . -type f \( -name '*.so' -o -perm -u+x \) ! -path '*.p/*' ! -path './meson-*' "${cpu_only[@]}" -print0 |
  tar --null -czf ../.carry/build-cuda.tgz -T -)
for lib in libtomlplusplus.so.3 libutf8proc.so.2; do
  cp -L "/usr/lib/x86_64-linux-gnu/$lib" .carry/lib/
done
rm -rf .fixtures && mkdir -p .fixtures/models .fixtures/data
for m in "$@"; do cp -r "../shared/models/$m" .fixtures/models/; done
cp ../shared/data/pystdlib-valid.txt .fixtures/data/
du -sh .carry .fixtures
