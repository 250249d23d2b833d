"""Bad input to export: every error names the value, the rule and the fix."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kale_ext import ConfigError, KaleError
from kale_ext.export import TARGETS, MissingDependency, export
from kale_ext.trial import TrialState, open_store

QUICK = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def store_path(tmp_path):
    """A small store as a training run leaves it: trial 0, no objective, three rows."""
    from kale_ext.channel import Message

    path = tmp_path / "run.kale.sqlite"
    with open_store(path) as store:
        store.create_search({"name": "train-small", "kind": "training", "metric": None,
                             "mode": None, "workers": 2})
        store.add_trial(0, {"lr": 0.1, "model": {"width": 8}})
        store.transition(0, TrialState.RUNNING, "started")
        store.append([Message(0, 0, rank, seq, "report", 1000.0 + seq,
                              {"epoch": seq, "loss": 1 / (seq + 1)})
                      for rank, seq in ((0, 0), (0, 1), (1, 0))])
        store.transition(0, TrialState.COMPLETED, "every rank returned")
    return path


@QUICK
@given(st.text(max_size=20).filter(lambda s: s not in TARGETS))
def test_an_unknown_target_is_named_with_the_known_ones(store_path, to):
    with pytest.raises(ConfigError) as e:
        export(store_path, to=to, dir=store_path.parent)
    assert repr(to) in str(e.value)
    assert all(repr(t) in str(e.value) for t in TARGETS)


@pytest.mark.parametrize("to", ["tensorboard", "parquet", "csv"])
def test_file_targets_need_a_dir(store_path, to):
    with pytest.raises(ConfigError, match=r"needs dir=.*e\.g\. export"):
        export(store_path, to=to)


@pytest.mark.parametrize("to", ["mlflow", "optuna"])
def test_stores_need_a_uri_or_a_dir(store_path, to):
    with pytest.raises(ConfigError, match=r"needs uri=.*or dir="):
        export(store_path, to=to)


def test_options_of_another_target_are_refused(store_path, tmp_path):
    with pytest.raises(ConfigError, match=r"to='csv'\) takes dir, not uri='x.db'"):
        export(store_path, to="csv", dir=tmp_path, uri="x.db")
    with pytest.raises(ConfigError, match=r"not artifacts=True"):
        export(store_path, to="optuna", dir=tmp_path, artifacts=True)
    with pytest.raises(ConfigError, match=r"is a file, not a folder"):
        export(store_path, to="csv", dir=store_path)


@QUICK
@given(st.text(min_size=1, max_size=30).filter(
    lambda s: "://" not in s and s.strip()
    and not s.lower().endswith((".db", ".sqlite", ".sqlite3", ".log", ".journal", ".jsonl"))))
def test_a_uri_that_names_no_optuna_storage(store_path, uri):
    with pytest.raises(ConfigError) as e:
        export(store_path, to="optuna", uri=uri)
    assert repr(uri) in str(e.value) and "sqlite:///" in str(e.value)


@QUICK
@given(st.sampled_from(["ftp://host/x", "s3://bucket/runs", "runs/mlruns", "mlflow"]))
def test_a_uri_that_is_no_mlflow_tracking_store(store_path, uri):
    with pytest.raises(ConfigError) as e:
        export(store_path, to="mlflow", uri=uri)
    assert repr(uri) in str(e.value) and "sqlite:///PATH.db" in str(e.value)


@QUICK
@given(st.binary(max_size=200))
def test_a_file_that_is_no_store(contents):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "not-a-store.kale.sqlite"
        path.write_bytes(contents)
        with pytest.raises(ConfigError) as e:
            export(path, to="csv", dir=folder)
    assert str(path) in str(e.value) and "not a kale store" in str(e.value)
    assert ".kale.sqlite" in str(e.value)  # the fix: what export takes


@QUICK
@given(st.one_of(st.integers(), st.none(), st.lists(st.integers(), max_size=2),
                 st.text(alphabet="abc/", min_size=1, max_size=12)))
def test_no_store_at_all(tmp_path, source):
    with pytest.raises(ConfigError) as e:
        export(source, to="csv", dir=tmp_path)
    shown = os.fspath(source) if isinstance(source, str) else source
    assert repr(shown) in str(e.value) and "kale search list" in str(e.value)


def test_a_missing_library_names_the_extra(store_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingDependency, match=r"pip install 'kale-ext\[export\]'") as e:
        export(store_path, to="mlflow", dir=tmp_path)
    assert isinstance(e.value, KaleError) and "mlflow-skinny" in str(e.value)


def test_a_run_without_objective_is_no_optuna_study(store_path, tmp_path):
    with pytest.raises(ConfigError, match=r"'train-small' is a training without an objective"):
        export(store_path, to="optuna", dir=tmp_path)


def test_a_training_store_exports_its_ranks(store_path, tmp_path):
    import pandas as pd

    done = export(store_path, to="csv", dir=tmp_path)
    assert (done.trials, done.rows) == (1, 3)
    metrics = pd.read_csv(tmp_path / "train-small.metrics.csv")
    assert sorted(metrics["rank"]) == [0, 0, 1]
    trials = pd.read_csv(tmp_path / "train-small.trials.csv")
    assert list(trials["params.model.width"]) == [8]
    assert list(trials["reason"]) == ["every rank returned"]


def test_a_foreign_tensorboard_folder_is_left_alone(store_path, tmp_path):
    (tmp_path / "train-small").mkdir()
    (tmp_path / "train-small" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"was not written by an export"):
        export(store_path, to="tensorboard", dir=tmp_path)
    assert (tmp_path / "train-small" / "notes.txt").read_text() == "mine"
