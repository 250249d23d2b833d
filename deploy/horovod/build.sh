#!/usr/bin/env bash
# Build and install Horovod (gloo controller, PyTorch frontend) into the venv.
#
# Horovod ships on PyPI as a source package only; building it takes ~10 minutes
# on 2 cores, so the built wheel is cached outside the checkout and a second run
# on the same machine installs from the cache without rebuilding.
#
# Usage: bash deploy/horovod/build.sh [python]     (default: .venv/bin/python)
# Env:   KALE_WHEEL_CACHE  wheel cache folder (default ~/.cache/kale-ext/wheels)
#        HOROVOD_VERSION   (default 0.28.1)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${1:-$root/.venv/bin/python}"
version="${HOROVOD_VERSION:-0.28.1}"
cache="${KALE_WHEEL_CACHE:-$HOME/.cache/kale-ext/wheels}"

if "$py" -c "import horovod, horovod.torch; assert horovod.__version__ == '$version'" 2>/dev/null; then
  echo "horovod $version already installed"
  exit 0
fi

mkdir -p "$cache"
if ! ls "$cache"/horovod-"$version"-*.whl >/dev/null 2>&1; then
  # The system cmake first; cmake 4 (pip's) builds too once told to accept gloo's old
  # cmake_minimum_required.
  export CMAKE_POLICY_VERSION_MINIMUM=3.5
  cmake_bin="$(command -v cmake || true)"
  if [ -z "$cmake_bin" ] || [ "$cmake_bin" = "$(dirname "$py")/cmake" ]; then
    for c in /usr/bin/cmake /usr/local/bin/cmake; do [ -x "$c" ] && cmake_bin="$c" && break; done
  fi
  [ -x "$cmake_bin" ] || { echo "build.sh: no cmake (>= 3.13) found; apt-get install cmake" >&2; exit 1; }
  # Horovod's setup.py looks cmake up on PATH: put the chosen one first.
  cmake_dir="$(mktemp -d)"
  ln -s "$cmake_bin" "$cmake_dir/cmake"
  export PATH="$cmake_dir:$PATH"

  export KALE_REAL_CXX="${CXX:-g++}"
  export CXX="$here/cxx17"
  export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1
  export HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
  if command -v mpicxx >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1; then
    export HOROVOD_WITH_MPI=1
  else
    export HOROVOD_WITHOUT_MPI=1
  fi
  export MAKEFLAGS="-j${HOROVOD_BUILD_JOBS:-$(nproc)}"
  # --no-build-isolation: build against the torch already in the venv.
  "$py" -m pip wheel --no-deps --no-build-isolation --wheel-dir "$cache" \
    "horovod==$version"
  rm -rf "$cmake_dir"
fi

# Horovod itself only from the cached wheel; its few pure-Python deps from the index.
"$py" -m pip install --find-links "$cache" --only-binary=horovod "horovod==$version"
"$py" -c "import horovod.torch as hvd; print('horovod', __import__('horovod').__version__, 'gloo built:', hvd.gloo_built())"
