"""The ``kale`` command line, run as users run it: the installed script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kale_ext import registry

KALE = str(Path(sys.executable).with_name("kale"))


def kale(*args: str, check: bool = True, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([KALE, *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})))
    if check:
        assert proc.returncode == 0, f"kale {' '.join(args)}: {proc.stderr}"
    return proc


def test_help_lists_command_groups():
    out = kale("--help").stdout
    for group in ("cluster", "profiles", "slurm-dev"):
        assert group in out


def test_profiles_table_and_json():
    out = kale("profiles").stdout
    assert out.splitlines()[0].split()[:3] == ["PROFILE", "KIND", "BACKEND"]
    assert any(line.startswith("local *") for line in out.splitlines())
    data = json.loads(kale("profiles", "--json").stdout)
    assert data["default"] == "local"
    assert data["profiles"]["slurm-dev"]["interface_host"] == "127.0.0.1"


@pytest.mark.slow
def test_cluster_lifecycle_from_the_command_line():
    started = json.loads(kale("cluster", "start", "local", "-n", "1", "--json").stdout)
    cluster_id = started["id"]
    try:
        assert started["n_workers"] == 1 and started["state"] == "running"
        listed = json.loads(kale("cluster", "list", "--json").stdout)
        assert [c["id"] for c in listed] == [cluster_id]
        table = kale("cluster", "list").stdout.splitlines()
        assert table[0].split()[:4] == ["ID", "BACKEND", "KIND", "STATE"]
        assert table[1].split()[:4] == [cluster_id, "dask", "local", "running"]

        assert "asked for 2 workers" in kale("cluster", "scale", cluster_id, "2").stdout
        status = json.loads(kale("cluster", "status", cluster_id, "--json").stdout)
        assert status["id"] == cluster_id
        out = kale("cluster", "adapt", cluster_id, "1", "2", "--json").stdout
        assert json.loads(out) == {"id": cluster_id, "minimum": 1, "maximum": 2}
        assert "adaptive 1..2" in kale("cluster", "status", cluster_id).stdout
    finally:
        out = kale("cluster", "stop", cluster_id).stdout
    assert f"{cluster_id}: stopped" in out
    assert registry.read("clusters", cluster_id) is None
    assert json.loads(kale("cluster", "list", "--json").stdout) == []


def test_errors_are_one_line_and_exit_1():
    proc = kale("cluster", "status", "kc-nothere", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("kale: error: No cluster 'kc-nothere'")
    proc = kale("cluster", "start", "-p", "atlantis", check=False)
    assert proc.returncode == 1 and "Unknown profile 'atlantis'" in proc.stderr
    proc = kale("cluster", "start", "slurm-dev", "--queue", "debug;id", check=False)
    assert proc.returncode == 1 and "queue='debug;id'" in proc.stderr
    proc = kale("cluster", "start", "--option", "novalue", check=False)
    assert proc.returncode == 2 and "KEY=VALUE" in proc.stderr


@pytest.mark.slurm
@pytest.mark.slow
def test_start_on_slurm_with_options_and_a_rejected_partition():
    proc = kale("cluster", "start", "slurm-dev", "--queue", "nowhere", check=False)
    assert proc.returncode == 1
    assert "invalid partition" in proc.stderr.lower()
    started = json.loads(kale("cluster", "start", "-p", "slurm-dev", "-n", "1",
                              "--walltime", "00:05:00", "-o", "job_extra=[--comment=cli]",
                              "--json").stdout)
    try:
        assert started["kind"] == "slurm" and started["n_workers"] == 1
        job_id = started["jobs"][0]["job_id"]
        comment = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%k"],
                                 capture_output=True, text=True).stdout.strip()
        assert comment == "cli"
    finally:
        kale("cluster", "stop", started["id"])


@pytest.mark.slurm
def test_slurm_dev_status():
    proc = kale("slurm-dev", "status")
    assert "debug" in proc.stdout


def test_slurm_dev_scripts_missing_is_a_clear_error(tmp_path):
    proc = kale("slurm-dev", "status", check=False, env={"KALE_SLURM_DEV_DIR": str(tmp_path)})
    assert proc.returncode == 1
    assert "Cannot find deploy/slurm-dev/up.sh" in proc.stderr
    assert "KALE_SLURM_DEV_DIR" in proc.stderr


@pytest.mark.slurm
@pytest.mark.slow
def test_cluster_start_slurm_without_a_profile():
    proc = kale("cluster", "start", "slurm", "-n", "1", "--walltime", "00:10:00", "--json",
                check=False)
    assert proc.returncode == 0, proc.stderr
    assert "threads_per_worker" not in proc.stderr
    started = json.loads(proc.stdout)
    try:
        assert started["kind"] == "slurm" and started["n_workers"] == 1
    finally:
        kale("cluster", "stop", started["id"])


def _stored_search(folder: Path) -> Path:
    from kale_ext.store import Store

    path = folder / "runs" / "demo-2.kale.sqlite"
    path.parent.mkdir()
    with Store.open(path) as store:
        store.create_search({"name": "demo-2", "metric": "val_acc", "mode": "max", "trials": 1,
                             "algorithm": "tpe",
                             "scheduler": {"type": "asha", "max_t": 9, "grace_period": 1}})
        store.add_trial(0, {"lr": 0.01})
    return path


def test_search_show_prints_the_scheduler(tmp_path):
    out = kale("search", "show", str(_stored_search(tmp_path))).stdout
    assert "scheduler asha" in out, out


def test_the_demos_store_hint_is_a_command_that_works(tmp_path):
    import shlex

    from kale_ext.demo import store_hint

    store = _stored_search(tmp_path)
    hint = store_hint(store)
    command = shlex.split(hint[hint.index("kale search show"):])
    assert command[:3] == ["kale", "search", "show"] and command[3] == str(store)
    out = kale(*command[1:]).stdout
    assert out.startswith("demo-2: ") and "scheduler asha" in out
