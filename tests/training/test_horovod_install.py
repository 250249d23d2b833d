"""The Horovod that deploy/horovod/build.sh installs: horovodrun --gloo runs an allreduce."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.training.conftest import needs_horovod

pytestmark = [pytest.mark.horovod, needs_horovod]


def test_horovodrun_gloo_allreduce(tmp_path):
    script = tmp_path / "allreduce.py"
    script.write_text(textwrap.dedent("""
        import torch
        import horovod.torch as hvd

        hvd.init()
        total = hvd.allreduce(torch.tensor([float(hvd.rank() + 1)]), op=hvd.Sum)
        print(f"rank {hvd.rank()} of {hvd.size()}: {total.item()}")
    """))
    horovodrun = Path(sys.executable).parent / "horovodrun"
    proc = subprocess.run([str(horovodrun), "--gloo", "-np", "2", "-H", "localhost:2",
                           sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 of 2: 3.0" in proc.stdout and "rank 1 of 2: 3.0" in proc.stdout


def test_built_with_gloo_and_torch():
    import horovod
    import horovod.torch as hvd

    assert horovod.__version__ == "0.28.1"
    assert hvd.gloo_built()
