#!/usr/bin/env bash
# Browser tests: Debian's chromium (+ chromedriver) and Python Playwright in the venv.
# Idempotent. Playwright drives /usr/bin/chromium; its own browser download is never used
# (compute nodes and CI have no route to it).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-.venv/bin/python}"

if [ ! -x /usr/bin/chromium ] || ! command -v chromedriver >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
fi
"$PY" -c "import playwright" 2>/dev/null || "$PY" -m pip install -q "playwright>=1.40"
"$PY" -c "import jupyterlab, ipydatagrid, jupyter_bokeh" 2>/dev/null \
    || "$PY" -m pip install -q -e ".[widgets]"
echo "browser tests ready: $(/usr/bin/chromium --version 2>/dev/null || echo 'no chromium')"
