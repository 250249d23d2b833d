"""Every export target, read back with its own library and compared with the store."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from kale_ext.export import MARKER, export
from kale_ext.trial import TrialState
from tests.export import trainables


def _flat(config, prefix=""):
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.fixture(scope="module")
def truth(search):
    """What the store holds: trials, numeric metric rows per trial and tag, reasons, best."""
    store = search.store
    trials = {t.number: t for t in store.trials()}
    rows = {n: store.metrics(n) for n in trials}
    reasons = {}
    for t in store.transitions():
        reasons[t.trial] = t.reason
    series = {n: {} for n in trials}
    for n, trial_rows in rows.items():
        for row in trial_rows:
            for key, value in row.values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    series[n].setdefault(key, []).append((row.step, value))
    return {"trials": trials, "rows": rows, "series": series, "reasons": reasons,
            "best": search.best, "states": {n: TrialState(t.state).label
                                            for n, t in trials.items()}}


def test_the_search_covers_every_final_state(truth):
    assert truth["states"] == {0: "completed", 1: "completed", 2: "failed", 3: "pruned",
                               4: "pruned", 5: "stopped"}
    assert truth["best"]["trial"] == trainables.BEST
    assert any(c for c in truth["trials"].values() if c.checkpoint)


def test_tensorboard(search, truth, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    done = search.export(to="tensorboard", dir=tmp_path)
    root = tmp_path / search.name
    assert done.location == str(root.resolve()) and (root / MARKER).exists()
    top = EventAccumulator(str(root))
    top.Reload()
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        top.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    hparams = {h.name: h for h in experiment.hparam_infos}
    assert {"x", "lr", "layers", "opt", "epochs", "arch.kind", "kale.state"} <= set(hparams)
    assert (hparams["x"].domain_interval.min_value, hparams["x"].domain_interval.max_value) \
        == (0.0, 1.0)
    assert {"score", "loss", "kale/best_score"} <= {m.name.tag for m in experiment.metric_infos}

    for number, record in truth["trials"].items():
        run = EventAccumulator(str(root / f"trial-{number:04d}"))
        run.Reload()
        for tag, points in truth["series"][number].items():
            scalars = run.Scalars(tag)
            assert [s.step for s in scalars] == [step for step, _ in points], (number, tag)
            assert [s.value for s in scalars] == pytest.approx([v for _, v in points], rel=1e-6)
        session = {}
        for tag, content in run.PluginTagToContent("hparams").items():
            session[tag] = plugin_data_pb2.HParamsPluginData.FromString(content)
        start = session["_hparams_/session_start_info"].session_start_info
        for name, value in _flat(record.params).items():
            field = start.hparams[name]
            got = field.string_value if isinstance(value, str) else field.number_value
            assert got == pytest.approx(value), (number, name)
        assert start.hparams["kale.state"].string_value == truth["states"][number]
        status = session["_hparams_/session_end_info"].session_end_info.status
        assert status == (2 if truth["states"][number] == "failed" else 1)
        state_text = run.Tensors("kale/state/text_summary")[0].tensor_proto.string_val[0]
        assert truth["reasons"][number] in state_text.decode()
    best = EventAccumulator(str(root / f"trial-{truth['best']['trial']:04d}"))
    best.Reload()
    assert best.Scalars("kale/best_score")[0].value == pytest.approx(truth["best"]["value"])

    # A second export replaces the first rather than appending to it.
    export(search, to="tensorboard", dir=tmp_path)
    again = EventAccumulator(str(root / "trial-0000"))
    again.Reload()
    assert len(again.Scalars("score")) == len(truth["series"][0]["score"])


def test_mlflow(search, truth, tmp_path):
    import mlflow

    done = export(search, to="mlflow", dir=tmp_path)
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert done.location == uri and done.run_id
    # Exported again, with checkpoints as artifacts: the earlier runs are replaced.
    done = search.export(to="mlflow", uri=uri, artifacts=True)
    client = mlflow.MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["kale"])
    parents = runs[runs["tags.kale.role"] == "search"]
    children = runs[runs["tags.kale.role"] == "trial"]
    assert len(parents) == 1 and parents.iloc[0]["run_id"] == done.run_id
    assert parents.iloc[0]["metrics.best_score"] == pytest.approx(truth["best"]["value"])
    assert parents.iloc[0]["tags.kale.best_trial"] == str(truth["best"]["trial"])
    assert parents.iloc[0]["params.algorithm"] == "random"
    assert len(children) == len(truth["trials"])
    assert set(children["tags.mlflow.parentRunId"]) == {done.run_id}
    status = {"completed": "FINISHED", "failed": "FAILED", "pruned": "KILLED",
              "stopped": "KILLED"}
    for _, child in children.iterrows():
        number = int(child["tags.kale.trial"])
        record = truth["trials"][number]
        assert child["tags.kale.state"] == truth["states"][number]
        assert child["tags.kale.reason"] == truth["reasons"][number]
        assert child["status"] == status[truth["states"][number]]
        for name, value in _flat(record.params).items():
            assert child[f"params.{name}"] == str(value)
        for tag, points in truth["series"][number].items():
            history = client.get_metric_history(child["run_id"], tag)
            assert sorted((m.step, m.value) for m in history) == \
                sorted((s, pytest.approx(v)) for s, v in points)
        if record.checkpoint:
            assert child["tags.kale.checkpoint"] == record.checkpoint
            assert [a.path for a in client.list_artifacts(child["run_id"], "checkpoint")] == \
                [f"checkpoint/{record.checkpoint.rsplit('/', 1)[-1]}"]
    failed = children[children["tags.kale.state"] == "failed"].iloc[0]
    assert "planted failure" in failed["tags.kale.error"]


@pytest.mark.parametrize("storage", ["optuna.db", "optuna.log"])
def test_optuna(search, truth, tmp_path, storage):
    import optuna

    done = export(search, to="optuna", uri=tmp_path / storage)
    if storage.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        assert done.location == str((tmp_path / storage).resolve())
        opened = optuna.storages.JournalStorage(JournalFileBackend(done.location))
    else:
        opened = done.location
    study = optuna.load_study(study_name=search.name, storage=opened)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = {t.user_attrs["kale.trial"]: t for t in study.trials}
    assert sorted(trials) == sorted(truth["trials"])
    states = {"completed": "COMPLETE", "failed": "FAIL", "pruned": "PRUNED",
              "stopped": "PRUNED"}
    for number, trial in trials.items():
        record = truth["trials"][number]
        assert trial.state.name == states[truth["states"][number]]
        assert trial.user_attrs["kale.reason"] == truth["reasons"][number]
        assert trial.params == _flat(record.params)
        steps = truth["series"][number]["score"]
        assert sorted(trial.intermediate_values.items()) == \
            sorted((s, pytest.approx(v)) for s, v in steps)
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(record.best)
    first = trials[0]
    assert first.distributions["x"] == optuna.distributions.FloatDistribution(0.0, 1.0)
    assert first.distributions["lr"] == optuna.distributions.FloatDistribution(
        1e-4, 1e-1, log=True)
    assert first.distributions["opt"] == optuna.distributions.CategoricalDistribution(
        ["adam", "sgd"])
    assert study.best_trial.user_attrs["kale.trial"] == truth["best"]["trial"]
    assert study.best_value == pytest.approx(truth["best"]["value"])
    assert study.user_attrs["kale.best_trial"] == truth["best"]["trial"]
    assert "fn_pickle" not in study.user_attrs["kale.definition"]

    # Exported again: the study is replaced, not doubled.
    export(search, to="optuna", uri=tmp_path / storage)
    assert len(optuna.load_study(study_name=search.name, storage=opened).trials) == len(trials)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_tables(search, truth, tmp_path, fmt):
    import pandas as pd

    done = search.export(to=fmt, dir=tmp_path)
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    trials = read(tmp_path / f"{search.name}.trials.{fmt}").set_index("trial")
    metrics = read(tmp_path / f"{search.name}.metrics.{fmt}")
    assert done.paths == (str(tmp_path / f"{search.name}.trials.{fmt}"),
                          str(tmp_path / f"{search.name}.metrics.{fmt}"))
    assert sorted(trials.index) == sorted(truth["trials"])
    assert len(metrics) == sum(len(r) for r in truth["rows"].values())
    assert Counter(metrics["trial"]) == {n: len(r) for n, r in truth["rows"].items() if r}
    for number, record in truth["trials"].items():
        row = trials.loc[number]
        assert row["state"] == truth["states"][number]
        assert row["reason"] == truth["reasons"][number]
        assert bool(row["is_best"]) == (number == truth["best"]["trial"])
        for name, value in _flat(record.params).items():
            assert row[f"params.{name}"] == pytest.approx(value) if not isinstance(value, str) \
                else row[f"params.{name}"] == value
        if record.best is not None:
            assert math.isclose(row["best"], record.best)
    if fmt == "parquet":  # a gap in an int column keeps it int
        assert str(trials["params.arch.width"].dtype) == "Int64" \
            or trials["params.arch.width"].notna().all()
    score = metrics[metrics["trial"] == 0].sort_values("seq")
    assert list(score["step"]) == [s for s, _ in truth["series"][0]["score"]]
    assert set(metrics["phase"]) == {"train"}
    json.dumps(done.paths)  # plain strings
