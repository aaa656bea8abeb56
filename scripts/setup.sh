#!/usr/bin/env bash
# Installs kvrun's build dependencies (Debian/Ubuntu packages) and builds it into ./build.
# CUDA parts are built when nvcc is found (the CUDA toolkit itself is not installed here).
# Usage: ./scripts/setup.sh [extra meson options, e.g. -Dcuda=disabled]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(meson ninja-build pkg-config g++ libboost-dev libboost-program-options-dev
          libtomlplusplus-dev doctest-dev libpcre2-dev libutf8proc-dev nlohmann-json3-dev
          clang libclang-rt-14-dev  # clang + libFuzzer/ASan runtime: scripts/fuzz.sh, scripts/test.sh
          gnuplot-nox)              # kvrun bench --plot
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# nvcc is often installed outside PATH
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
if [ -d build ]; then
  meson setup --reconfigure build "$@"
else
  meson setup build "$@"
fi
ninja -C build
