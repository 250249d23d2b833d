"""registry.pid_alive: what a cluster's record is judged by when its owner may be gone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from kale_ext import registry
from tests.conftest import wait_for

HOST = socket.gethostname()


def test_a_live_process_is_alive_and_an_exited_unreaped_one_is_not():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        assert registry.pid_alive(proc.pid, HOST) is True
        proc.stdin.close()  # it exits; until it is reaped it stays a zombie
        wait_for(lambda: registry.pid_alive(proc.pid, HOST) is False, 10, 0.05,
                 what="the exited child to count as gone")
        os.kill(proc.pid, 0)  # the zombie still holds its pid: only /proc tells
    finally:
        proc.wait(10)
    assert registry.pid_alive(proc.pid, HOST) is False


def test_a_process_on_another_host_cannot_be_judged():
    assert registry.pid_alive(os.getpid(), HOST + "-elsewhere") is None


# --- owner-only folders and files --------------------------------------------------------

import stat  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from kale_ext.channel import ChannelInfo, new_key  # noqa: E402
from kale_ext.store import SQLiteStore  # noqa: E402
from kale_ext.trial import checkpoint_root  # noqa: E402

NOBODY = 65534  # another user than the one running the tests (root may chown to it)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_registry_folders_and_records_are_created_owner_only(kale_state):
    path = registry.write("clusters", "c1", {"id": "c1"})
    assert mode(kale_state) == 0o700
    assert mode(kale_state / "clusters") == 0o700
    assert mode(path) == 0o600
    assert mode(registry.private_dir("clusters", "c1")) == 0o700


def test_a_loose_registry_folder_and_record_are_tightened(kale_state):
    path = registry.write("searches", "s1", {"name": "s1"})
    kale_state.chmod(0o755)
    (kale_state / "searches").chmod(0o711)
    path.chmod(0o644)
    assert registry.read("searches", "s1") == {"name": "s1"}
    assert mode(kale_state) == 0o700
    assert mode(kale_state / "searches") == 0o700
    assert mode(path) == 0o600


@pytest.mark.parametrize("loose", [0o770, 0o757, 0o777])
def test_a_registry_folder_others_may_write_is_refused(kale_state, loose):
    registry.write("clusters", "c1", {"id": "c1"})
    (kale_state / "clusters").chmod(loose)
    with pytest.raises(registry.UnsafePathError) as e:
        registry.read("clusters", "c1")
    message = str(e.value)
    assert str(kale_state / "clusters") in message and f"mode {loose:04o}" in message
    assert "writable by its group or by everyone" in message and "chmod 700" in message
    assert mode(kale_state / "clusters") == loose  # refused, not silently repaired


def test_a_record_others_may_write_is_refused_before_it_is_read(kale_state):
    path = registry.write("clusters", "c1", {"id": "c1"})
    path.chmod(0o666)
    with pytest.raises(registry.UnsafePathError, match="chmod 600"):
        registry.read("clusters", "c1")
    with pytest.raises(registry.UnsafePathError, match="Registry record"):
        list(registry.records("clusters"))


def test_a_record_of_another_user_is_refused(kale_state):
    path = registry.write("clusters", "c1", {"id": "c1"})
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(registry.UnsafePathError) as e:
        registry.read("clusters", "c1")
    assert "belongs to another user" in str(e.value) and "owner nobody" in str(e.value)
    assert str(path) in str(e.value) and "chown" in str(e.value)


def test_a_state_folder_of_another_user_is_refused(kale_state):
    kale_state.mkdir(mode=0o700)
    os.chown(kale_state, NOBODY, NOBODY)
    with pytest.raises(registry.UnsafePathError, match=r"Kale state folder .* another user"):
        registry.write("clusters", "c1", {"id": "c1"})


def test_private_folder_creates_missing_parents_owner_only(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    registry.private_folder(target)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", target)] == [0o700] * 3


def test_a_file_where_a_folder_belongs_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(registry.UnsafePathError, match="is not a folder"):
        registry.private_folder(tmp_path / "f")


def test_a_chosen_folder_is_checked_not_tightened(tmp_path):
    chosen = tmp_path / "runs"
    chosen.mkdir(mode=0o755)
    chosen.chmod(0o755)
    assert registry.safe_parent(chosen) == chosen
    assert mode(chosen) == 0o755
    chosen.chmod(0o1777)  # sticky like /tmp: others cannot replace the user's files
    registry.safe_parent(chosen)
    chosen.chmod(0o777)
    with pytest.raises(registry.UnsafePathError, match="writable by its group or by everyone"):
        registry.safe_parent(chosen)
    chosen.chmod(0o755)
    os.chown(chosen, NOBODY, NOBODY)
    with pytest.raises(registry.UnsafePathError, match="another user"):
        registry.safe_parent(chosen)


# --- stores ------------------------------------------------------------------------------


def make_store(path: Path) -> None:
    store = SQLiteStore(path)
    store.create_search({"name": "s", "fn_pickle": "x"})
    store.close()


def test_a_store_is_created_owner_only_in_an_owner_only_folder(tmp_path):
    path = tmp_path / "new-folder" / "s.kale.sqlite"
    make_store(path)
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    assert mode(Path(f"{path}.lock")) == 0o600


def test_the_default_store_folder_is_tightened(kale_state):
    from kale_ext import config
    from kale_ext.store import default_path

    path = default_path("tight")
    config.store_dir().chmod(0o755)
    make_store(path)
    assert mode(config.store_dir()) == 0o700


def test_a_readable_store_is_tightened_before_it_is_opened(tmp_path):
    path = tmp_path / "s.kale.sqlite"
    make_store(path)
    path.chmod(0o644)
    SQLiteStore(path, readonly=True).close()
    assert mode(path) == 0o600


@pytest.mark.parametrize("readonly", [True, False])
def test_a_store_others_may_write_is_refused(tmp_path, readonly):
    path = tmp_path / "s.kale.sqlite"
    make_store(path)
    path.chmod(0o666)
    with pytest.raises(registry.UnsafePathError) as e:
        SQLiteStore(path, readonly=readonly)
    assert f"Search store {path} (owner root, mode 0666)" in str(e.value)


def test_a_store_whose_wal_others_may_write_is_refused(tmp_path):
    path = tmp_path / "s.kale.sqlite"
    make_store(path)
    wal = Path(f"{path}-wal")
    wal.write_bytes(b"")
    wal.chmod(0o646)
    with pytest.raises(registry.UnsafePathError, match="-wal"):
        SQLiteStore(path, readonly=True)


def test_a_store_of_another_user_is_refused(tmp_path):
    path = tmp_path / "s.kale.sqlite"
    make_store(path)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(registry.UnsafePathError, match="belongs to another user"):
        SQLiteStore(path, readonly=True)


def test_a_store_in_a_folder_others_may_write_is_refused(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / "s.kale.sqlite"
    make_store(path)
    folder.chmod(0o777)
    with pytest.raises(registry.UnsafePathError, match="Search store folder"):
        SQLiteStore(path, readonly=True)


# --- checkpoints, channel files, TLS files -----------------------------------------------


def test_checkpoint_roots_are_owner_only_and_tightened(tmp_path):
    store = tmp_path / "s.kale.sqlite"
    root = checkpoint_root(store)
    assert mode(root) == 0o700
    root.chmod(0o755)
    checkpoint_root(store)
    assert mode(root) == 0o700
    root.chmod(0o777)
    with pytest.raises(registry.UnsafePathError, match="Checkpoint folder"):
        checkpoint_root(store)


def test_a_checkpoint_setting_folder_is_created_owner_only(tmp_path):
    import dask.config

    with dask.config.set({"kale.checkpoint-dir": str(tmp_path / "scratch" / "ckpt")}):
        root = checkpoint_root(tmp_path / "s.kale.sqlite")
    assert [mode(p) for p in (tmp_path / "scratch", root.parent, root)] == [0o700] * 3


def test_a_planted_checkpoint_is_not_unpickled(tmp_path):
    import torch

    from kale_ext.trial import TrialContext, load_checkpoint, using

    planted = tmp_path / "trial-0" / "step-000001.pt"
    registry.private_folder(planted.parent)
    torch.save({"w": 1}, planted)
    ctx = TrialContext(trial=0, attempt=0, rank=0, config={}, checkpoint_dir=str(planted.parent),
                       restore_from=str(planted))
    with using(ctx):
        planted.chmod(0o666)
        with pytest.raises(registry.UnsafePathError, match="Checkpoint"):
            load_checkpoint()
        planted.chmod(0o600)
        assert load_checkpoint() == {"w": 1}


def test_a_channel_file_others_may_write_is_refused(tmp_path):
    path = tmp_path / "channel.json"
    ChannelInfo.create("tcp://127.0.0.1:1", new_key()).save(path)
    assert mode(path) == 0o600
    assert ChannelInfo.load(path).address == "tcp://127.0.0.1:1"
    path.chmod(0o622)
    with pytest.raises(registry.UnsafePathError, match="Channel file"):
        ChannelInfo.load(path)


def test_tls_files_are_owner_only_and_a_planted_ca_is_refused(tmp_path):
    from kale_ext.clusters._dask_tls import CA_FILE, create_credentials, security

    folder = create_credentials(tmp_path / "tls", ips=["127.0.0.1"])
    assert mode(folder) == 0o700
    assert {p.name: mode(p) for p in folder.iterdir()} == {
        "ca.pem": 0o600, "cert.pem": 0o600, "key.pem": 0o600}
    assert security(folder).require_encryption
    (folder / CA_FILE).chmod(0o664)
    with pytest.raises(registry.UnsafePathError, match="Cluster TLS file"):
        security(folder)
