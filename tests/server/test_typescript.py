"""The TypeScript unit tests (models and the request wrapper), run with node's test runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


BIN = Path(sys.executable).parent
# jlpm and jupyter live beside this Python, which need not be on PATH.
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _jlpm() -> list[str]:
    jlpm = shutil.which("jlpm", path=ENV["PATH"])
    if jlpm is None:
        pytest.skip("jlpm is missing: it ships with jupyterlab (pip install jupyterlab)")
    if shutil.which("node") is None:
        pytest.skip("node is missing: install Node.js >= 20 to build and test the lab extension")
    return [jlpm]


@pytest.mark.slow
def test_typescript_unit_tests_pass():
    jlpm = _jlpm()
    if not (ROOT / "node_modules" / ".bin" / "tsc").exists():
        subprocess.run([*jlpm, "install"], cwd=ROOT, check=True, capture_output=True,
                       timeout=600, env=ENV)
    proc = subprocess.run([*jlpm, "test"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout
