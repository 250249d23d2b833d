"""A search's driver in a process of its own: it outlives the kernel that started it.

A real Jupyter kernel starts a search (the driver leaves the kernel by default) and is
killed; the trials go on, this process and a fresh Python process attach by name and
steer them. A driver process killed with SIGKILL is resumed from the command line with
no completed trial rerun and no stored row lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import kale_ext as kale
from kale_ext import registry
from kale_ext.search import TrialState
from tests.conftest import process_gone, run_python, wait_for
from tests.search.resumed import check_resumed, stored

ROOT = Path(__file__).resolve().parents[2]

SEARCH = """
import cloudpickle
import kale_ext as kale
from tests.search import trainables
cloudpickle.register_pickle_by_value(trainables)
space = {{"log": {log!r}, "pids": {pids!r}, "sleep": {sleep}, "q": kale.uniform(0.1, 1.0),
          "tag": kale.int(0, 10**9), "epochs": {epochs}}}
search = kale.Search(trainables.slow_checkpointed, space, metric="acc", trials={trials},
                     cluster=kale.connect({cluster!r}), seed=3, name={name!r}{extra})
search.start()
print("DRIVER", type(search._driver).__name__, flush=True)
"""


def _space_args(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "pids").mkdir(exist_ok=True)
    return {"log": str(tmp_path / "log.jsonl"), "pids": str(tmp_path / "pids")}


def _rows(name: str) -> set[tuple[int, int, int]]:
    return {(m.trial, m.attempt, m.seq) for m in kale.search(name).store.metrics()}


def _states(name: str) -> dict[int, TrialState]:
    return {t.number: TrialState(t.state) for t in kale.search(name).store.trials()}


@pytest.fixture
def cluster():
    with kale.start_cluster("local", backend="dask", workers=2) as c:
        yield c


@pytest.mark.slow
def test_search_outlives_its_kernel_and_is_steered_from_elsewhere(cluster, tmp_path):
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env)
    try:
        code = SEARCH.format(**_space_args(tmp_path), sleep=0.3, epochs=60, trials=4,
                             cluster=cluster.id, name="outlives", extra="")
        reply = kc.execute_interactive(code, timeout=120, output_hook=_collect)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "DRIVER DriverProcess" in "".join(_OUT), _OUT  # not the kernel's thread
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)  # the kernel dies with the search running
    assert km.is_alive() is False

    search = kale.search("outlives")
    assert search.running
    before = len(_rows("outlives"))
    wait_for(lambda: len(_rows("outlives")) >= before + 6, timeout=60,
             what="reports after the kernel died")

    # Another process (a second kernel, the CLI's way in) stops one running trial.
    running = wait_for(lambda: [n for n, s in _states("outlives").items()
                                if s is TrialState.RUNNING], timeout=30, what="a running trial")
    out = run_python("import kale_ext as kale\n"
                     f"kale.search('outlives').stop({running[0]})\n"
                     "print(kale.search('outlives').running)")
    assert out.strip() == "True"
    wait_for(lambda: _states("outlives")[running[0]] is TrialState.STOPPED, timeout=30,
             what=f"trial {running[0]} stopped")

    # This process pauses and resumes the whole search through its handle.
    search.pause()
    wait_for(lambda: TrialState.PAUSED in _states("outlives").values(), timeout=30,
             what="a paused trial")
    search.resume()
    search.stop()
    search.wait(60)
    assert not search.running
    assert search.store.search()["state"] == "stopped"
    assert registry.read("searches", "outlives")["driver_pid"] != os.getpid()


_OUT: list[str] = []


def _collect(msg: dict) -> None:
    if msg["msg_type"] == "stream":
        _OUT.append(msg["content"]["text"])


@pytest.mark.slow
def test_killed_driver_process_resumes_from_the_command_line(cluster, tmp_path):
    args = _space_args(tmp_path)
    out = run_python(SEARCH.format(**args, sleep=0.15, epochs="kale.choice([4, 30])",
                                   trials=6, cluster=cluster.id, name="killed",
                                   extra=", detach=True, report_timeout=3.0"))
    assert "DRIVER DriverProcess" in out

    def progress() -> bool:
        states = _states("killed")
        return list(states.values()).count(TrialState.COMPLETED) >= 1 and \
            TrialState.RUNNING in states.values()
    wait_for(progress, timeout=90, what="a completed and a running trial")
    record = registry.read("searches", "killed")
    os.kill(record["driver_pid"], signal.SIGKILL)
    process_gone(record["driver_pid"])

    search = kale.search("killed")
    assert not search.running
    with pytest.raises(kale.SearchError, match="kale search resume killed"):
        search.wait(5)
    before, rows_before = stored(record["store"])

    kale_cli = str(Path(sys.executable).parent / "kale")
    proc = subprocess.run([kale_cli, "search", "resume", "killed"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "new driver process" in proc.stdout
    assert registry.read("searches", "killed")["driver_pid"] != record["driver_pid"]

    search = kale.search("killed").wait(180)
    check_resumed(search, before, rows_before, Path(args["log"]), trials=6)
