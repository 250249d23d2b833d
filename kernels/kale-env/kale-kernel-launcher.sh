#!/usr/bin/env bash
# Start an IPython kernel with kale loaded inside a site environment.
#
# Variables (set in kernel.json's "env" by `kale kernels install`, or inherited):
#   KALE_KERNEL_SETUP      a shell file to source first (site init, e.g. /etc/profile.d/modules.sh)
#   KALE_KERNEL_MODULES    modules to `module load`, space separated (e.g. "python pytorch/2.3")
#   KALE_KERNEL_CONDA_ENV  a conda environment name or path to `conda activate`
#   KALE_KERNEL_PYTHON     the python to exec (default: python3 of the environment)
# Arguments are passed on to ipykernel (the connection file: -f FILE).
set -euo pipefail

fail() {
    echo "kale kernel launcher: $*" >&2
    exit 1
}

if [[ -n "${KALE_KERNEL_SETUP:-}" ]]; then
    [[ -r "$KALE_KERNEL_SETUP" ]] || fail "KALE_KERNEL_SETUP=$KALE_KERNEL_SETUP is not a readable file"
    # shellcheck disable=SC1090
    source "$KALE_KERNEL_SETUP"
fi

if [[ -n "${KALE_KERNEL_MODULES:-}" ]]; then
    if ! type module >/dev/null 2>&1; then
        for init in /etc/profile.d/lmod.sh /etc/profile.d/modules.sh /usr/share/lmod/lmod/init/bash; do
            # shellcheck disable=SC1090
            [[ -r "$init" ]] && source "$init" && break
        done
    fi
    type module >/dev/null 2>&1 || fail "KALE_KERNEL_MODULES=$KALE_KERNEL_MODULES but no 'module' command; set KALE_KERNEL_SETUP to your site's modules init script"
    # shellcheck disable=SC2086
    module load $KALE_KERNEL_MODULES || fail "module load $KALE_KERNEL_MODULES failed"
fi

if [[ -n "${KALE_KERNEL_CONDA_ENV:-}" ]]; then
    if ! type conda >/dev/null 2>&1 || [[ "$(type -t conda)" != "function" ]]; then
        base="$(conda info --base 2>/dev/null)" || fail "KALE_KERNEL_CONDA_ENV=$KALE_KERNEL_CONDA_ENV but no 'conda' command; load it with KALE_KERNEL_MODULES or KALE_KERNEL_SETUP"
        # shellcheck disable=SC1091
        source "$base/etc/profile.d/conda.sh"
    fi
    conda activate "$KALE_KERNEL_CONDA_ENV" || fail "conda activate $KALE_KERNEL_CONDA_ENV failed"
fi

python="${KALE_KERNEL_PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || fail "KALE_KERNEL_PYTHON=$python is not on PATH=$PATH"
exec "$python" -m ipykernel_launcher --ext=kale_ext "$@"
