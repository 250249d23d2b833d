#!/usr/bin/env bash
# Install MPI for ipyparallel MPI engine sets: Debian's MPICH and mpi4py built against it.
#
# MPICH, not Open MPI: under Slurm, engines start with `srun --mpi=pmi2`, and Debian's
# MPICH speaks PMI-2 to Slurm's pmi2 plugin, while Debian's Open MPI needs PMIx, which
# this Slurm cannot load. mpi4py is built from source against it: PyPI's binary wheels
# look for libmpi.so.12, a name Debian's MPICH does not install (it has libmpich.so.12).
# Idempotent: a second run with both in place does nothing.
#
# Usage: bash deploy/mpi/install.sh [python]     (default: .venv/bin/python)
# Env:   MPI4PY_VERSION (default 4.1.2)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${1:-$root/.venv/bin/python}"
version="${MPI4PY_VERSION:-4.1.2}"

check='from mpi4py import MPI; import mpi4py; v = MPI.Get_library_version().split()
assert mpi4py.__version__ == "'"$version"'" and v[:1] == ["MPICH"], v
print("mpi4py", mpi4py.__version__, "on", " ".join(v[:3]))'

if command -v mpicc >/dev/null 2>&1 && "$py" -c "$check" 2>/dev/null; then
  exit 0
fi
if ! command -v mpicc.mpich >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "install.sh: MPICH is missing; as root: apt-get install mpich libmpich-dev" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mpich libmpich-dev
fi
MPICC=mpicc.mpich "$py" -m pip install -q --force-reinstall --no-deps --no-binary mpi4py \
  "mpi4py==$version"
"$py" -c "$check"
