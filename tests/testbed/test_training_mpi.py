"""An ipyparallel MPI engine set across two test-bed nodes: mpi4py's allreduce.

The engines are MPI ranks: ipyparallel's Slurm engine set runs them with ``srun``, and
``SLURM_MPI_TYPE=pmi2`` in the job's prologue makes that ``srun --mpi=pmi2`` (this
Slurm's PMIx plug-in cannot load), which Debian's MPICH speaks (``make mpi`` installs it
and mpi4py). ``UCX_TLS=tcp,self`` is the test bed's own: its nodes share one kernel, so
MPICH's UCX takes them for one machine and picks shared-memory transports that cannot
cross their namespaces; at a centre UCX picks the interconnect by itself.
"""

from __future__ import annotations

import sys

import pytest

from tests.testbed.conftest import Testbed
from tests.testbed.kale_helpers import by_value, engines_on_two_nodes, on_testbed

pytestmark = pytest.mark.testbed

by_value(sys.modules[__name__])

PROLOGUE = ["export SLURM_MPI_TYPE=pmi2", "export UCX_TLS=tcp,self"]


def allreduce():
    """This engine's MPI rank, and the sum of rank + 1 over every rank."""
    import socket

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    library = MPI.Get_library_version().split()[0]
    return {"rank": comm.Get_rank(), "size": comm.Get_size(), "host": socket.gethostname(),
            "sum": comm.allreduce(comm.Get_rank() + 1, op=MPI.SUM), "library": library}


def test_mpi_engine_set_allreduces_across_two_nodes(testbed: Testbed, tmp_path_factory):
    with on_testbed(testbed, tmp_path_factory.mktemp("kale-state")):
        cluster = engines_on_two_nodes(testbed, prologue=PROLOGUE)
        try:
            out = list(cluster.run_on_workers(allreduce).values())
        finally:
            cluster.stop()
    assert sorted(o["rank"] for o in out) == [0, 1]
    assert {o["size"] for o in out} == {2}
    assert {o["sum"] for o in out} == {3}
    assert len({o["host"] for o in out}) == 2 and {o["host"] for o in out} <= set(testbed.nodes)
    assert {o["library"] for o in out} == {"MPICH"}
