"""MLflow: one parent run per search, one child run per trial.

The parent run (named after the search, tag ``kale.role=search``) holds the definition's
settings as params, the best value as ``best_<metric>`` and the best trial's number as
tag ``kale.best_trial``. Each child run (``trial-0007``, tag ``mlflow.parentRunId``)
holds the trial's flat params, every metric row as a metric with its step and time
(``rank1/<name>`` for other ranks), and tags ``kale.state``, ``kale.reason``,
``kale.error``, ``kale.checkpoint``. Run statuses: completed -> FINISHED, failed ->
FAILED, pruned and stopped -> KILLED, running and paused -> RUNNING, pending ->
SCHEDULED. Exporting the same search again replaces its runs in the experiment.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kale_ext._errors import ConfigError
from kale_ext.export._data import SearchData, TrialData, metric_name, number, scalar, step_of
from kale_ext.export._deps import require

logger = logging.getLogger(__name__)

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_STATUS = {"completed": "FINISHED", "failed": "FAILED", "pruned": "KILLED",
           "stopped": "KILLED", "pending": "SCHEDULED"}
_SEARCH_STATUS = {"completed": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}
# MLflow's limits on one value (mlflow.utils.validation), and on one batch.
_PARAM_LENGTH, _TAG_LENGTH = 6000, 8000
_METRICS_PER_BATCH, _PARAMS_PER_BATCH = 1000, 100


def tracking_uri(uri: str | os.PathLike[str] | None, dir: Path | None) -> str:
    """Return the tracking URI to write to: ``uri=``, else ``DIR/mlflow.db`` of ``dir=``.

    Raises
    ------
    ConfigError
        For neither, or a URI that is not a SQLite file, a ``file:`` store or a server.
    """
    if uri is None:
        if dir is None:
            raise ConfigError(
                "export(to='mlflow') needs uri= (a tracking URI such as "
                "'sqlite:///runs/mlflow.db') or dir= (it then writes DIR/mlflow.db).")
        return f"sqlite:///{(dir / 'mlflow.db').resolve()}"
    text = os.fspath(uri)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"export(to='mlflow', uri={uri!r}): uri must be a tracking URI such "
                          "as 'sqlite:///runs/mlflow.db' or a path ending in .db.")
    if text.startswith(("sqlite:///", "file:", "http://", "https://")):
        return text
    if "://" not in text and text.lower().endswith(_SQLITE_SUFFIXES):
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    raise ConfigError(
        f"export(to='mlflow', uri={text!r}): not a tracking URI this export writes. Use "
        "'sqlite:///PATH.db' or a path ending in .db, .sqlite or .sqlite3 (a SQLite file), "
        "'file:///DIR' (MLflow's file store) or an http(s):// tracking server.")


def _artifact_root(uri: str, experiment: str) -> str | None:
    """Artifacts of a SQLite-tracked experiment go beside the database, not into the cwd."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / experiment).as_uri()


def _cut(text: Any, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _client(uri: str) -> Any:
    mlflow = require("mlflow", target="mlflow", package="mlflow-skinny")
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
    except mlflow.exceptions.MlflowException as e:
        raise ConfigError(
            f"export(to='mlflow', uri={uri!r}): MLflow cannot open this tracking store: {e} "
            "A SQLite URI ('sqlite:///PATH.db') works with every MLflow version.") from e
    return client


def _experiment(client: Any, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=_artifact_root(uri, name)))


def _remove_earlier(client: Any, experiment_id: str, search: str) -> None:
    """Delete the runs an earlier export of ``search`` left, so one export stands."""
    quoted = search.replace("\\", "\\\\").replace("'", "\\'")
    token = None
    while True:
        page = client.search_runs([experiment_id], f"tags.`kale.search` = '{quoted}'",
                                  max_results=1000, page_token=token)
        for run in page:
            client.delete_run(run.info.run_id)
        token = page.token
        if not token:
            return


def _log(client: Any, run_id: str, metrics: list[Any], params: dict[str, Any],
         tags: dict[str, Any]) -> None:
    from mlflow.entities import Param, RunTag

    param_list = [Param(k, _cut(scalar(v), _PARAM_LENGTH)) for k, v in params.items()]
    tag_list = [RunTag(k, _cut(v, _TAG_LENGTH)) for k, v in tags.items() if v is not None]
    for batch in _chunks(param_list, _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=batch)
    for batch in _chunks(tag_list, _PARAMS_PER_BATCH):
        client.log_batch(run_id, tags=batch)
    for batch in _chunks(metrics, _METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=batch)


def _end(client: Any, run_id: str, status: str | None, ended: float | None) -> None:
    if status == "SCHEDULED":
        client.update_run(run_id, status=status)
    elif status is not None:
        client.set_terminated(run_id, status=status, end_time=_ms(ended))


def _trial_run(client: Any, data: SearchData, trial: TrialData, experiment_id: str,
               parent: str, artifacts: bool) -> str:
    from mlflow.entities import Metric

    tags = {"mlflow.parentRunId": parent, "kale.search": data.name, "kale.role": "trial",
            "kale.trial": trial.number, "kale.state": trial.state, "kale.reason": trial.reason,
            "kale.error": trial.error, "kale.worker": trial.worker,
            "kale.attempt": trial.attempt, "kale.checkpoint": trial.checkpoint,
            "kale.checkpoints": json.dumps(list(trial.checkpoints)) if trial.checkpoints
            else None,
            "kale.best": str(data.best is not None and data.best.number == trial.number).lower()}
    run = client.create_run(experiment_id, start_time=_ms(trial.started),
                            tags={"mlflow.parentRunId": parent, "kale.search": data.name},
                            run_name=trial.run_name)
    run_id = run.info.run_id
    metrics = [Metric(metric_name(row, key), x, int(row.time * 1000), step_of(row))
               for row in data.rows_of(trial.number)
               for key, value in row.values.items() if (x := number(value)) is not None]
    if data.metric and trial.best is not None:
        metrics.append(Metric(f"best_{data.metric}", trial.best, _ms(trial.ended) or 0,
                              trial.best_step or 0))
    _log(client, run_id, metrics, trial.flat, tags)
    if artifacts and trial.checkpoint:
        path = Path(trial.checkpoint)
        if path.is_dir():
            client.log_artifacts(run_id, str(path), "checkpoint")
        elif path.exists():
            client.log_artifact(run_id, str(path), "checkpoint")
        else:
            logger.warning("Checkpoint %s of trial %d is not on this machine; only its path "
                           "is recorded (tag kale.checkpoint).", path, trial.number)
    _end(client, run_id, _STATUS.get(trial.state), trial.ended)
    return str(run_id)


def write(data: SearchData, uri: str, *, experiment: str, artifacts: bool) -> str:
    """Write ``data`` to the tracking store at ``uri``; return the parent run's id."""
    client = _client(uri)  # first: it says which package to install when mlflow is missing
    from mlflow.entities import Metric

    experiment_id = _experiment(client, experiment, uri)
    _remove_earlier(client, experiment_id, data.name)
    created = data.definition.get("created")
    started = min((t.started for t in data.trials if t.started), default=created)
    parent = client.create_run(experiment_id, start_time=_ms(started), run_name=data.name,
                               tags={"kale.search": data.name})
    parent_id = parent.info.run_id
    settings = {k: json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
                for k, v in data.definition.items() if k not in ("space", "created", "name")}
    best = data.best
    metrics = [] if best is None or best.best is None or not data.metric else [
        Metric(f"best_{data.metric}", best.best, _ms(best.ended) or 0, best.best_step or 0)]
    _log(client, parent_id, metrics, settings, {
        "kale.role": "search", "kale.kind": data.kind, "kale.store": data.store,
        "kale.metric": data.metric, "kale.mode": data.mode, "kale.state": data.state,
        "kale.best_trial": None if best is None else best.number,
        "kale.space": json.dumps(data.definition.get("space"), sort_keys=True)})
    if artifacts:
        client.log_dict(parent_id, data.definition, "definition.json")
    for trial in data.trials:
        _trial_run(client, data, trial, experiment_id, parent_id, artifacts)
    ended = max((t.ended for t in data.trials if t.ended), default=None)
    _end(client, parent_id, _SEARCH_STATUS.get(data.state or ""), ended)
    return str(parent_id)
