"""Node-local /local differs per node; the scratch folder is shared by all nodes."""

from __future__ import annotations

import shutil
import uuid

import pytest

from tests.testbed.conftest import Testbed

pytestmark = pytest.mark.testbed


def test_local_differs_per_node_while_scratch_is_shared(testbed: Testbed):
    tag = f"paths-{uuid.uuid4().hex[:8]}"
    shared = testbed.scratch / tag
    try:
        testbed.srun("-w", "node1", "bash", "-c",
                     f'echo from-node1 > /local/{tag} && mkdir "$SCRATCH/{tag}" '
                     f'&& echo from-node1 > "$SCRATCH/{tag}/file"')
        out = testbed.srun("-w", "node3", "bash", "-c",
                           f'echo "$SCRATCH"; cat "$SCRATCH/{tag}/file"; '
                           f'test -e /local/{tag} && echo local-seen || echo local-absent')
        assert out.split() == [str(testbed.scratch), "from-node1", "local-absent"]
        # The login node sees scratch at the same path, and not node1's /local.
        assert (shared / "file").read_text() == "from-node1\n"
        assert not (testbed.local / tag).exists()
        # node1's /local keeps what node1 wrote, for its next job.
        assert testbed.srun("-w", "node1", "cat", f"/local/{tag}") == "from-node1\n"
    finally:
        testbed.srun("-w", "node1", "rm", "-f", f"/local/{tag}")
        shutil.rmtree(shared, ignore_errors=True)


def test_every_node_has_its_own_local_folder(testbed: Testbed):
    out = testbed.srun("-N3", "bash", "-c",
                       'echo "$SLURMD_NODENAME $(stat -c %i /local)"')
    inodes = dict(line.split() for line in out.splitlines())
    assert set(inodes) == set(testbed.nodes)
    assert len(set(inodes.values())) == len(testbed.nodes)


def test_batch_job_writes_its_output_on_shared_scratch(testbed: Testbed):
    out_file = testbed.scratch / f"batch-{uuid.uuid4().hex[:8]}.out"
    try:
        job = testbed.run("sbatch", "--parsable", "-w", "node2", "-o", str(out_file),
                          "--wrap", 'echo "$(hostname) $SCRATCH"').stdout.strip()
        assert testbed.wait_job(job) == "COMPLETED"
        assert out_file.read_text().split() == ["node2", str(testbed.scratch)]
    finally:
        out_file.unlink(missing_ok=True)
