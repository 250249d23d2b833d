"""``kale.checkpoint-dir``: expansion, the folder's marker, and the unshared-folder warning."""

from __future__ import annotations

import dask.config
import pytest

from kale_ext import ConfigError
from kale_ext.channel import Message
from kale_ext.trial import (
    CHECKPOINT_MARKER,
    CheckpointWarning,
    Ingest,
    TrialEvents,
    checkpoint_root,
    checkpoint_setting,
    open_store,
    sees_checkpoint_root,
)


def test_default_is_beside_the_store(tmp_path):
    store = tmp_path / "s.kale.sqlite"
    with dask.config.set({"kale.checkpoint-dir": None}):
        root = checkpoint_root(store)
    assert root == tmp_path / "s.kale.sqlite.checkpoints"
    assert (root / CHECKPOINT_MARKER).exists()
    assert sees_checkpoint_root(str(root / "trial-3"))


def test_setting_expands_variables_and_keeps_stores_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    with dask.config.set({"kale.checkpoint-dir": "$SCRATCH/kale/checkpoints"}):
        assert checkpoint_setting() == tmp_path / "scratch" / "kale" / "checkpoints"
        one = checkpoint_root(tmp_path / "a" / "mnist.kale.sqlite")
        two = checkpoint_root(tmp_path / "b" / "mnist.kale.sqlite")
    assert one.parent == two.parent == tmp_path / "scratch" / "kale" / "checkpoints"
    assert one.name.startswith("mnist-") and one != two
    assert (one / CHECKPOINT_MARKER).exists()


def test_unset_variable_or_relative_path_is_refused(monkeypatch):
    monkeypatch.delenv("NO_SUCH_SCRATCH", raising=False)
    with dask.config.set({"kale.checkpoint-dir": "${NO_SUCH_SCRATCH}/ckpt"}), \
            pytest.raises(ConfigError, match=r"\$NO_SUCH_SCRATCH, which are not set"):
        checkpoint_setting()
    with dask.config.set({"kale.checkpoint-dir": "ckpt"}), \
            pytest.raises(ConfigError, match="must be an absolute path"):
        checkpoint_setting()


class _Events(TrialEvents):
    def __init__(self):
        self.started = []

    def attempt(self, trial):
        return 0

    def on_start(self, message):
        self.started.append(message.rank)


def _start(rank, shared, seq=0):
    return Message(0, 0, rank, seq, "start", 0.0, {"host": "node2", "worker": "w-1", "pid": 1,
                                                 "checkpoint_dir": "/local/x/trial-0",
                                                 "checkpoints_shared": shared})


def test_ingest_warns_once_when_a_worker_does_not_see_the_folder(tmp_path):
    store = open_store(tmp_path / "s.kale.sqlite")
    store.create_search({"name": "s"})
    store.add_trial(0, {})
    events = _Events()
    ingest = Ingest(store, events)
    ingest([_start(0, True)])
    with pytest.warns(CheckpointWarning, match=r"/local/x.*worker w-1 on host node2") as caught:
        ingest([_start(0, False, seq=1)])
        ingest([_start(1, False), _start(0, False, seq=2)])
    assert len(caught) == 1
    assert events.started == [0, 0, 1, 0]
    store.close()
