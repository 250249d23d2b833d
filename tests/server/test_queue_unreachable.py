"""``GET kale/api/clusters`` when the batch queue cannot be asked (its status command
fails or hangs): 200, each batch cluster says "unknown" with the reason, and no record
is cleaned away on an answer nobody got. The failing and hanging ``squeue``/``qstat``/
``bjobs`` are small scripts put first on PATH: a fault injected, not a mock of Slurm."""

from __future__ import annotations

import os
import socket

import pytest

from kale_ext import registry
from kale_ext.clusters import ClusterRecord

FAIL = ('#!/bin/sh\necho "slurm_load_jobs error: Unable to contact slurm controller '
        '(connect failure)" >&2\nexit 1\n')
HANG = "#!/bin/sh\nexec sleep 600\n"


@pytest.fixture(params=["fails", "hangs"])
def broken_queue(request, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in ("squeue", "qstat", "bjobs"):
        script = bin_dir / command
        script.write_text(FAIL if request.param == "fails" else HANG)
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return request.param


def _record(cid: str, kind: str, backend: str, job_ids: list[str], host: str,
            pid: int) -> ClusterRecord:
    record = ClusterRecord(id=cid, backend=backend, kind=kind, address="tls://10.0.0.9:8786",
                           job_ids=job_ids, owner_pid=pid, owner_host=host)
    record.save()
    return record


async def test_clusters_say_unknown_with_the_reason_and_keep_their_records(api, broken_queue):
    # Daemons on a compute node (this host cannot see their pids) and one whose owner
    # died on this host: none may be cleaned away without the queue's word.
    _record("kc-slurm", "slurm", "dask", ["4242"], "node9", 4242)
    _record("kc-pbs", "pbs", "ipyparallel", ["77.server"], "node9", 77)
    _record("kc-dead", "slurm", "dask", ["4243"], socket.gethostname(), 2**22 + 1)
    status, listed = await api("GET", "clusters")
    assert status == 200, listed
    by_id = {c["id"]: c for c in listed}
    assert set(by_id) == {"kc-slurm", "kc-pbs", "kc-dead"}
    for cid, command in [("kc-slurm", "squeue"), ("kc-pbs", "qstat"), ("kc-dead", "squeue")]:
        cluster = by_id[cid]
        assert cluster["state"] == "unknown", cluster
        detail = cluster["detail"]
        assert command in detail and "could not be asked" in detail, detail
        assert ("did not answer" if broken_queue == "hangs" else "exited with code 1") in detail
    assert {r["id"] for r in registry.records("clusters")} == {"kc-slurm", "kc-pbs", "kc-dead"}


async def test_a_record_without_jobs_whose_owner_is_elsewhere_is_kept(api):
    # A cluster scaled to zero whose daemon runs on another host: nothing tells it is
    # gone, so its record stays (it is listed as unreachable from here).
    _record("kc-zero", "slurm", "dask", [], "node9", 4244)
    status, listed = await api("GET", "clusters")
    assert status == 200 and [c["id"] for c in listed] == ["kc-zero"], listed
    assert listed[0]["state"] == "unreachable"
    assert registry.read("clusters", "kc-zero") is not None
