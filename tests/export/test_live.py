"""Live TensorBoard logging: the driver's updates follow the store, each row once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kale_ext import ConfigError
from kale_ext.channel import Message
from kale_ext.export import LiveLog, live_log, log_folder
from kale_ext.trial import TrialState, open_store
from tests.conftest import wait_for


def _report(trial, seq, **values):
    return Message(trial, 0, 0, seq, "report", 1000.0 + seq, values)


def _accumulate(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = EventAccumulator(str(path))
    run.Reload()
    return run


def test_updates_write_each_row_once_and_end_finished_trials(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    with open_store(tmp_path / "s.kale.sqlite") as store:
        store.create_search({"name": "live", "metric": "acc", "mode": "max"})
        log = LiveLog(tmp_path / "tb", "live", every=0)
        for n in (0, 1):
            store.add_trial(n, {"lr": 0.1 * (n + 1), "opt": {"name": "sgd"}})
            store.transition(n, TrialState.RUNNING, "started")
        store.append([_report(n, s, epoch=s, acc=0.1 * s) for n in (0, 1) for s in (0, 1)])
        log.update(store)
        store.append([_report(0, s, epoch=s, acc=0.1 * s) for s in (2, 3)])
        store.transition(0, TrialState.COMPLETED, "done")
        log.update(store)
        store.append([_report(1, 2, epoch=2, acc=0.05)])
        store.transition(1, TrialState.PRUNED, "below the rung")
        log.close(store)

    root = tmp_path / "tb" / "live"
    first, second = _accumulate(root / "trial-0000"), _accumulate(root / "trial-0001")
    assert [s.step for s in first.Scalars("acc")] == [0, 1, 2, 3]
    assert [s.step for s in second.Scalars("acc")] == [0, 1, 2]
    assert first.Scalars("kale/best_acc")[0].value == pytest.approx(0.3)
    sessions = {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
                for tag, content in second.PluginTagToContent("hparams").items()}
    start = sessions["_hparams_/session_start_info"].session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.2)
    assert start.hparams["opt.name"].string_value == "sgd"
    assert sessions["_hparams_/session_end_info"].session_end_info.status == 1
    texts = [t.tensor_proto.string_val[0].decode()
             for t in second.Tensors("kale/state/text_summary")]
    assert texts[-1] == "**pruned**: below the rung"


def _matches_store(search, root) -> bool:
    for trial in search.store.trials():
        run = _accumulate(root / search.name / f"trial-{trial.number:04d}")
        rows = search.store.metrics(trial.number)
        if "score" not in run.Tags()["scalars"] or \
                [s.step for s in run.Scalars("score")] != [r.step for r in rows]:
            return False
        if TrialState(trial.state).is_finished() and \
                not run.Tensors("kale/state/text_summary"):
            return False
    return True


def test_the_search_logged_itself_live(search):
    # The log's thread writes the last of the store just after the driver is done.
    wait_for(lambda: _matches_store(search, search.store_path.parent / "live"), 30,
             what="the live log to hold every row")


def test_the_log_of_a_finished_search_matches_its_store(search, tmp_path):
    live_log(f"tensorboard:{tmp_path}", search.name).close(search.store)
    assert _matches_store(search, tmp_path)


def test_a_search_refuses_a_bad_log_spec_when_defined(tmp_path):
    import kale_ext as kale
    from tests.export.trainables import planted

    with pytest.raises(ConfigError, match="log_to='tensorbord:x'"):
        kale.Search(planted, {"epochs": 1}, metric="score", log_to="tensorbord:x",
                    store=tmp_path / "s.kale.sqlite")


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=20).filter(
    lambda s: not s.startswith("tensorboard:") or not s[len("tensorboard:"):].strip())))
def test_a_spec_that_is_not_tensorboard_dir(spec):
    with pytest.raises(ConfigError) as e:
        log_folder(spec)
    assert repr(spec) in str(e.value) and "log_to='tensorboard:DIR'" in str(e.value)


def test_follow_updates_until_done_then_closes(tmp_path):
    import threading

    with open_store(tmp_path / "s.kale.sqlite") as store:
        store.create_search({"name": "followed", "metric": "acc", "mode": "max"})
        store.add_trial(0, {"lr": 0.1})
        store.transition(0, TrialState.RUNNING, "started")
        done = threading.Event()
        log = LiveLog(tmp_path / "tb", "followed", every=0.05)
        thread = log.follow(store, done)
        store.append([_report(0, s, epoch=s, acc=0.1 * s) for s in range(3)])
        store.transition(0, TrialState.COMPLETED, "done")
        done.set()
        thread.join(30)
        assert not thread.is_alive()
    run = _accumulate(tmp_path / "tb" / "followed" / "trial-0000")
    assert [s.step for s in run.Scalars("acc")] == [0, 1, 2]
    assert run.Scalars("kale/best_acc")[0].value == pytest.approx(0.2)
