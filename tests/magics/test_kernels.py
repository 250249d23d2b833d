"""The kernelspecs of kernels/, installed with `kale kernels install` and run by nbclient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kale_ext.cli import main
from tests.magics.test_magics import _errors, _run, _text

LAUNCHER = Path(__file__).parents[2] / "kernels" / "kale-env" / "kale-kernel-launcher.sh"


@pytest.fixture
def prefix(tmp_path, monkeypatch):
    """Kernelspecs go under a private prefix that kernels are looked up in."""
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    return tmp_path


def test_preloaded_kernel_has_the_magics_without_load_ext(prefix, capsys):
    assert main(["kernels", "install", "--prefix", str(prefix)]) == 0
    installed = prefix / "share" / "jupyter" / "kernels" / "kale-python"
    assert f"installed kernelspec kale-python in {installed}" in capsys.readouterr().out
    spec = json.loads((installed / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and "--ext=kale_ext" in spec["argv"]

    cells = _run(["%kale help", "import kale_ext; print(kale_ext.__version__)"],
                 kernel="kale-python")
    assert not _errors(cells[0]) and "%%kale run" in _text(cells[0])
    assert _text(cells[1]).strip()

    assert main(["kernels", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["kale-python"]["kale"] == "preloaded"


def test_environment_kernel_runs_the_site_setup_then_ipykernel(prefix, tmp_path, capsys):
    setup = tmp_path / "site-setup.sh"
    setup.write_text("export KALE_SITE_MARK=from-site-setup\n")
    assert main(["kernels", "install", "--spec", "kale-env", "--prefix", str(prefix),
                 "--name", "kale-site", "--display-name", "Site (kale)",
                 "--setup", str(setup), "--python", sys.executable]) == 0
    folder = prefix / "share" / "jupyter" / "kernels" / "kale-site"
    spec = json.loads((folder / "kernel.json").read_text())
    assert spec["display_name"] == "Site (kale)"
    assert spec["env"]["KALE_KERNEL_SETUP"] == str(setup)
    assert os.access(folder / "kale-kernel-launcher.sh", os.X_OK)

    cells = _run(["import os; print(os.environ['KALE_SITE_MARK'])", "%kale help"],
                 kernel="kale-site")
    assert _text(cells[0]).strip() == "from-site-setup"
    assert not _errors(cells[1])


@pytest.mark.parametrize(("env", "words"), [
    ({"KALE_KERNEL_MODULES": "pytorch/2.3", "KALE_KERNEL_SETUP": ""},
     "no 'module' command; set KALE_KERNEL_SETUP"),
    ({"KALE_KERNEL_SETUP": "/nonexistent/init.sh"}, "is not a readable file"),
    ({"KALE_KERNEL_PYTHON": "no-such-python3"},
     "KALE_KERNEL_PYTHON=no-such-python3 is not on PATH"),
])
def test_launcher_fails_fast_naming_the_variable(env, words):
    proc = subprocess.run(["bash", str(LAUNCHER), "-f", "/dev/null"], capture_output=True,
                          text=True, timeout=30, env={"PATH": "/usr/bin:/bin", **env})
    assert proc.returncode == 1
    assert words in proc.stderr


def test_install_refuses_environment_settings_for_the_plain_kernel(prefix, capsys):
    assert main(["kernels", "install", "--prefix", str(prefix), "--module", "python"]) == 1
    assert "are for the 'kale-env' kernel" in capsys.readouterr().err
