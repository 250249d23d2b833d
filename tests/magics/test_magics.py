"""The %kale magics in a real kernel: a notebook executed by nbclient."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient


def _run(cells: list[str], kernel: str = "python3", timeout: int = 120):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    NotebookClient(nb, kernel_name=kernel, timeout=timeout, allow_errors=True).execute()
    return nb.cells


def _text(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
        elif "text/plain" in out.get("data", {}):
            parts.append(out.data["text/plain"])
    return "".join(parts)


def _errors(cell) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]


@pytest.mark.slow
def test_magics_start_run_status_stop_on_a_two_worker_cluster():
    cells = _run([
        "%load_ext kale_ext",
        "%kale start local -n 2 -b dask",
        "%%kale run\nimport os\npid = os.getpid()\nprint('pid', pid)",
        # Each worker keeps its namespace between cells, as with %%px.
        "%%kale run\nimport sys\nprint('again', pid)\nprint('to stderr', file=sys.stderr)",
        "%kale status",
        "print(type(kale_cluster).__name__, kale_cluster.n_workers())",
        "%%kale run\nraise ValueError('boom on purpose')",
        "%kale searches",
        "%kale stop",
        "%kale status",
    ])
    for cell in cells[:6]:
        assert not _errors(cell), (cell.source, _errors(cell))
    assert "started kc-" in _text(cells[1])

    first = _text(cells[2])
    headers = [line for line in first.splitlines() if line.startswith("[")]
    pids = [line.split()[1] for line in first.splitlines() if line.startswith("pid ")]
    assert len(headers) == 2 and len(set(pids)) == 2, first
    again = _text(cells[3])
    assert sorted(line.split()[1] for line in again.splitlines()
                  if line.startswith("again ")) == sorted(pids)
    assert again.count("to stderr") == 2
    assert any(o.output_type == "stream" and o.name == "stderr" for o in cells[3].outputs)

    assert "2 workers" in _text(cells[4]) and "dask on local" in _text(cells[4])
    assert "DaskCluster 2" in _text(cells[5])

    failed = _text(cells[6])
    assert failed.count("ValueError: boom on purpose") >= 2
    assert "The cell failed on 2 of 2 workers" in failed

    assert "no searches" in _text(cells[7])
    assert "stopped kc-" in _text(cells[8])
    assert "No active cluster" in _text(cells[9])


def test_magics_usage_errors_are_short_and_clear():
    cells = _run([
        "%load_ext kale_ext",
        "%kale start -n many",
        "%kale start local queue",
        "%%kale run\nprint(1)",
        "%%kale launch\nprint(1)",
        "%kale frobnicate",
        "%kale connect kc-nope",
        "%kale help",
    ])
    assert "invalid int value: 'many'" in _text(cells[1])
    assert "'queue' is not KEY=VALUE" in _text(cells[2])
    assert "No active cluster" in _text(cells[3])
    assert "The cell magic is '%%kale run'" in _text(cells[4])
    assert "invalid choice: 'frobnicate'" in _text(cells[5])
    assert "No cluster 'kc-nope'" in _text(cells[6])
    for cell in cells[1:7]:
        assert all(e.startswith("UsageError") for e in _errors(cell)), _errors(cell)
    assert "%%kale run" in _text(cells[7]) and "start" in _text(cells[7])


@pytest.mark.slow
def test_kale_run_streams_each_workers_lines_as_they_come():
    import time

    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        def execute(code: str, timeout: float = 180) -> list[tuple[float, str, str]]:
            """Run ``code``; return (arrival time, stream, text) of its stream outputs."""
            msg_id = kc.execute(code)
            got = []
            while True:
                msg = kc.get_iopub_msg(timeout=timeout)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    got.append((time.monotonic(), msg["content"]["name"],
                                msg["content"]["text"]))
                if msg["msg_type"] == "status" and \
                        msg["content"]["execution_state"] == "idle":
                    got.append((time.monotonic(), "idle", ""))
                    return got

        execute("%load_ext kale_ext\n%kale start local -n 2 -b dask")
        got = execute("%%kale run\nimport time\nprint('first', flush=True)\ntime.sleep(4)\n"
                      "print('second')")
        ended = got[-1][0]
        text = "".join(t for _, _, t in got)
        firsts = [at for at, _, t in got if "first" in t]
        assert text.count("first") == 2 and text.count("second") == 2, text
        assert firsts and all(ended - at > 2.5 for at in firsts), got  # shown while running
        assert "[0]" in text and "[1]" in text
        execute("%kale stop")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        import kale_ext as kale

        for status in kale.clusters(clean=False):  # a cluster outlives its kernel
            kale.stop(status.id)
