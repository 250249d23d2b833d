#!/usr/bin/env bash
# make gpu-check: kale on this machine's GPUs, with figures (deploy/gpu-check/README.md).
#
# Needs only this repository, python3 (>= 3.10) with pip, and network access to PyPI:
# it makes its own venv, installs torch==2.13.0 (PyPI's Linux wheel is a CUDA build) and
# kale_ext into it, runs check.py (kale.device() on CUDA, matmul and training-step
# throughput, DDP over nccl through kale on 1 and 2 ranks, allreduce times), then builds
# Horovod with HOROVOD_GPU_OPERATIONS=NCCL where the machine allows it and checks it too.
# Prints what it found at each step. Exit status: 0 all checks that ran passed, 1 one
# failed, 2 no GPU here (nothing is installed then).
#
# Usage: bash deploy/gpu-check/run.sh [--current-python] [--no-horovod] [--cpu]
#   --current-python  use $PYTHON (default python3) as it is, installing only what it lacks
#   --no-horovod      skip building and checking Horovod (the build takes minutes)
#   --cpu             run every step on the CPU over gloo, to try this script without a GPU
# Env: PYTHON (python3), KALE_GPU_CHECK_VENV (~/.cache/kale-ext/gpu-check/venv),
#      KALE_GPU_CHECK_HOROVOD_TIMEOUT (1800 s), CUDA_HOME (/usr/local/cuda), HOROVOD_NCCL_HOME
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
venv="${KALE_GPU_CHECK_VENV:-$HOME/.cache/kale-ext/gpu-check/venv}"
current=0 horovod=1 cpu=0
for arg in "$@"; do
  case "$arg" in
    --current-python) current=1 ;;
    --no-horovod) horovod=0 ;;
    --cpu) cpu=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $arg (see --help)" >&2; exit 64 ;;
  esac
done
say() { echo "gpu-check: $*"; }
fail() { say "$*"; exit 1; }

# 1. Is there a GPU at all? Answered before anything is installed.
if [ "$cpu" = 0 ]; then
  devices=$(ls /dev/nvidia[0-9]* 2>/dev/null | tr '\n' ' ')
  if command -v nvidia-smi >/dev/null 2>&1; then
    say "nvidia-smi: $(nvidia-smi --query-gpu=index,name,driver_version,memory.total \
      --format=csv,noheader 2>&1 | paste -sd ';' -)"
  else
    say "nvidia-smi: not found"
  fi
  say "device files: ${devices:-none}"
  if [ -z "$devices" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    say "RESULT: no NVIDIA GPU on this machine (no nvidia-smi, no /dev/nvidia<N>); gpu-check"
    say "needs one. Nothing was installed. (--cpu tries this script on the CPU.)"
    exit 2
  fi
fi

# 2. The Python: a venv of our own, or the current one.
"$python" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null \
  || fail "$python is missing or older than 3.10 (torch 2.13 and kale_ext need 3.10+); set PYTHON"
if [ "$current" = 1 ]; then
  py="$(command -v "$python")"
else
  if [ ! -x "$venv/bin/python" ]; then
    say "creating the venv $venv"
    "$python" -m venv "$venv" || fail "cannot create a venv with $python (Debian: apt-get install python3-venv)"
  fi
  py="$venv/bin/python"
fi
pip() { "$py" -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip >/dev/null 2>&1 || true
say "python: $py ($("$py" -c 'import platform; print(platform.python_version())'))"

# 3. torch: the pinned version; PyPI's Linux x86_64 wheel is built for CUDA.
if "$py" -c 'import torch' 2>/dev/null && { [ "$current" = 1 ] || "$py" -c \
    'import torch; assert torch.__version__.split("+")[0] == "2.13.0"' 2>/dev/null; }; then
  say "torch already installed"
else
  say "installing torch==2.13.0 (a CUDA build from PyPI: a few GB)"
  pip install -q "torch==2.13.0" numpy || fail "pip install torch==2.13.0 failed (see above)"
fi
say "torch: $("$py" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available(), "GPUs:", torch.cuda.device_count())' 2>/dev/null)"

# 4. kale_ext from this checkout, without the JupyterLab extension (no node needed).
if "$py" -c "import kale_ext, sys; sys.exit(not kale_ext.__file__.startswith('$root/'))" 2>/dev/null; then
  say "kale_ext from $root already installed"
else
  say "installing kale_ext from $root (editable, without the lab extension)"
  pip install -q hatchling hatch-jupyter-builder editables || fail "pip install hatchling failed"
  SKIP_JUPYTER_BUILDER=1 pip install -q --no-build-isolation -e "$root" \
    || fail "pip install -e $root failed (see above)"
fi

# 5. The checks that need no Horovod: their figures come first.
cpu_flag=()
[ "$cpu" = 1 ] && cpu_flag=(--cpu)
"$py" "$here/check.py" --no-horovod "${cpu_flag[@]}"
status=$?
[ "$status" = 2 ] && exit 2
if [ "$horovod" = 0 ]; then
  say "[skipped] Horovod over NCCL: --no-horovod given"
  exit "$status"
fi

# 6. Horovod with NCCL, where the machine allows its build.
horovod_skip() {
  say "[skipped] Horovod over NCCL: $*"
  exit "$status"
}
if "$py" -c 'import horovod.torch as h; assert h.nccl_built() and h.gloo_built()' 2>/dev/null; then
  say "Horovod with NCCL already installed"
elif [ "$cpu" = 1 ]; then
  "$py" -c 'import horovod.torch' 2>/dev/null \
    || horovod_skip "--cpu and no Horovod installed (bash deploy/horovod/build.sh builds the CPU one)"
else
  cuda_home="${CUDA_HOME:-/usr/local/cuda}"
  nvcc="$(command -v nvcc || true)"
  [ -z "$nvcc" ] && [ -x "$cuda_home/bin/nvcc" ] && nvcc="$cuda_home/bin/nvcc"
  [ -n "$nvcc" ] || horovod_skip "no CUDA toolkit here (no nvcc on PATH or in $cuda_home/bin):" \
    "Horovod's NCCL operations compile CUDA code. Install the toolkit matching torch's CUDA" \
    "and set CUDA_HOME."
  cuda_home="$(cd "$(dirname "$nvcc")/.." && pwd)"
  nvcc_version="$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')"
  torch_cuda="$("$py" -c 'import torch; print(torch.version.cuda)')"
  say "nvcc $nvcc_version at $nvcc; torch built for CUDA $torch_cuda"
  [ "${nvcc_version%%.*}" = "${torch_cuda%%.*}" ] || horovod_skip "nvcc is CUDA $nvcc_version" \
    "but torch was built for CUDA $torch_cuda; Horovod must be built with the same major version."
  cmake_bin="$(command -v cmake || true)"
  [ -n "$cmake_bin" ] || horovod_skip "no cmake (3.13 to 3.x; apt-get install cmake)"
  command -v "${CXX:-g++}" >/dev/null 2>&1 || horovod_skip "no C++ compiler (${CXX:-g++})"
  nccl_home="${HOROVOD_NCCL_HOME:-}"
  if [ -z "$nccl_home" ]; then
    # torch's own NCCL (the nvidia-nccl wheel) has the header and the library.
    wheel_nccl="$("$py" -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null)"
    [ -f "$wheel_nccl/include/nccl.h" ] || horovod_skip "no NCCL headers: set HOROVOD_NCCL_HOME" \
      "(a folder with include/nccl.h and lib/libnccl.so)"
    nccl_home="$(mktemp -d)"
    mkdir -p "$nccl_home/lib"
    ln -s "$wheel_nccl/include" "$nccl_home/include"
    ln -s "$wheel_nccl/lib/libnccl.so.2" "$nccl_home/lib/libnccl.so"
    ln -s "$wheel_nccl/lib/libnccl.so.2" "$nccl_home/lib/libnccl.so.2"
    say "NCCL from torch's nvidia-nccl wheel: $wheel_nccl"
  fi
  # Only this machine's GPU architectures: a build for every one nvcc knows takes far longer.
  cc_list="${HOROVOD_BUILD_CUDA_CC_LIST:-$("$py" -c 'import torch; print(",".join(sorted({
      "%d%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})))')}"
  log="$(mktemp -t kale-horovod-build.XXXXXX.log)"
  say "building Horovod with HOROVOD_GPU_OPERATIONS=NCCL (several minutes; log: $log)"
  if ! HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_HOME="$nccl_home" HOROVOD_CUDA_HOME="$cuda_home" \
      HOROVOD_NCCL_LINK=SHARED HOROVOD_BUILD_CUDA_CC_LIST="$cc_list" KALE_WHEEL_CACHE="$HOME/.cache/kale-ext/wheels-cuda$torch_cuda" \
      timeout "${KALE_GPU_CHECK_HOROVOD_TIMEOUT:-1800}" bash "$root/deploy/horovod/build.sh" "$py" \
      >"$log" 2>&1; then
    tail -n 30 "$log"
    horovod_skip "the build failed or timed out; the last lines of $log are above"
  fi
  tail -n 1 "$log"
fi
"$py" "$here/check.py" --only-horovod "${cpu_flag[@]}"
horovod_status=$?
exit $(( status > horovod_status ? status : horovod_status ))
