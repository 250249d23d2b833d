"""The Resources tab shows each worker's own process, not the host they share."""

from __future__ import annotations

from kale_ext.widgets import ResourcesView


def _sample(process_cpu: float, rss: int) -> dict:
    return {"time": 1000.0, "host": "node1", "pid": 1, "cpu": 88.0, "cpus": 8,
            "process_cpu": process_cpu, "memory": 40.0, "memory_used": 4 << 30,
            "memory_total": 16 << 30, "rss": rss, "gpus": []}


def test_two_workers_on_one_host_show_their_own_cpu_and_memory():
    view = ResourcesView()
    view.set_trials({"w0": [3], "w1": [4, 5]})
    view.show({"w0": _sample(97.0, 1 << 30), "w1": _sample(12.0, 2 << 30)})
    assert view.sources["w0"].data["cpu"] == [97.0]
    assert view.sources["w1"].data["cpu"] == [12.0]  # not the host's 88 for both
    assert view.sources["w0"].data["memory"] == [100 * (1 << 30) / (16 << 30)]
    table = view.table.value
    assert "<td>97%</td><td>88% of 8 cores</td>" in table
    assert "<td>3</td><td>97%</td>" in table and "<td>4, 5</td><td>12% shared</td>" in table
    assert "1024 MiB (6.2%)" in table


def test_a_one_core_host_reads_1_core():
    view = ResourcesView()
    view.show({"w0": {**_sample(50.0, 1 << 30), "cpus": 1}})
    assert "<td>88% of 1 core</td>" in view.table.value
