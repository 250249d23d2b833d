"""TensorBoard: one run per trial, written through ``torch.utils.tensorboard``.

``DIR/<search>/`` holds the HParams experiment (every parameter with its domain, every
metric); ``DIR/<search>/trial-0007/`` holds trial 7: a scalar per metric row (tag = the
metric's name, ``rank1/<name>`` for other ranks; x = its step; wall time = when it was
reported), ``kale/best_<metric>`` at the best step, its session for the HParams tab
(parameters, ``kale.state``, start and end) and text for its state, reason, error and
checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_ext._errors import ConfigError
from kale_ext.export._data import SearchData, TrialData, metric_name, number, scalar, step_of
from kale_ext.export._deps import require
from kale_ext.export._space import Domain, domains

if TYPE_CHECKING:
    from kale_ext.store import MetricRow

MARKER = ".kale-export"
"""Marks a folder an export wrote, so that a later export may replace it."""

STATE_HPARAM = "kale.state"
"""The HParams column that holds each trial's state, to filter trials by it."""

# The HParams plugin's session status: failed trials are failures; trials that ended
# otherwise (completed, pruned by a scheduler, stopped by the user) are successes;
# pending, running and paused ones are still running.
_STATUS = {"completed": "STATUS_SUCCESS", "pruned": "STATUS_SUCCESS",
           "stopped": "STATUS_SUCCESS", "failed": "STATUS_FAILURE"}


def best_tag(metric: str) -> str:
    """Name the scalar tag of a trial's best value of the objective."""
    return f"kale/best_{metric}"


def _plugin_summary(tag: str, **content: Any) -> Any:
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **content)
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def _kind(domain: Domain) -> str:
    """Say how the HParams plugin holds the values: ``number``, ``string`` or ``bool``."""
    if domain.kind != "choice":
        return "number"
    options = domain.options
    if options and all(isinstance(o, bool) for o in options):
        return "bool"
    if options and all(isinstance(o, int | float) and not isinstance(o, bool) for o in options):
        return "number"
    return "string"


def _value(kind: str, value: Any) -> Any:
    from google.protobuf import struct_pb2

    if kind == "number":
        return struct_pb2.Value(number_value=float(value))
    if kind == "bool":
        return struct_pb2.Value(bool_value=bool(value))
    return struct_pb2.Value(string_value=value if isinstance(value, str) else str(value))


def _experiment(hparams: dict[str, Domain], metrics: list[str], states: list[str]) -> Any:
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata

    infos = []
    for name, domain in hparams.items():
        kind = _kind(domain)
        info = api_pb2.HParamInfo(name=name, type=api_pb2.DataType.Value(
            {"number": "DATA_TYPE_FLOAT64", "bool": "DATA_TYPE_BOOL",
             "string": "DATA_TYPE_STRING"}[kind]))
        if domain.kind == "choice":
            info.domain_discrete.CopyFrom(struct_pb2.ListValue(
                values=[_value(kind, o) for o in domain.options]))
        else:
            info.domain_interval.CopyFrom(api_pb2.Interval(min_value=float(domain.low),
                                                           max_value=float(domain.high)))
        infos.append(info)
    infos.append(api_pb2.HParamInfo(
        name=STATE_HPARAM, type=api_pb2.DataType.Value("DATA_TYPE_STRING"),
        domain_discrete=struct_pb2.ListValue(values=[_value("string", s) for s in states])))
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=[
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in metrics])
    return _plugin_summary(metadata.EXPERIMENT_TAG, experiment=experiment)


def value_kind(value: Any) -> str:
    """Say how the HParams plugin holds one value: ``number``, ``string`` or ``bool``."""
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else "string"


def session_start(trial: TrialData, kinds: dict[str, str], *, state: bool = True) -> Any:
    """Summarise the trial's HParams session start: its params (and ``kale.state``)."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(start_time_secs=trial.started or 0.0)
    for name, value in trial.flat.items():
        start.hparams[name].CopyFrom(_value(kinds[name], scalar(value)))
    if state:
        start.hparams[STATE_HPARAM].CopyFrom(_value("string", trial.state))
    return _plugin_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start)


def write_rows(writer: Any, rows: list[MetricRow]) -> None:
    """Write each numeric value of ``rows`` as a scalar at its step and time."""
    for row in rows:
        for key, value in row.values.items():
            if (x := number(value)) is not None:
                writer.add_scalar(metric_name(row, key), x, global_step=step_of(row),
                                  walltime=row.time)


def write_end(writer: Any, trial: TrialData, metric: str | None) -> None:
    """Write how the trial stands: best value, state and reason, error, checkpoints, status."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    if metric and trial.best is not None:
        writer.add_scalar(best_tag(metric), trial.best, global_step=trial.best_step or 0,
                          walltime=trial.ended)
    text = f"**{trial.state}**" + (f": {trial.reason}" if trial.reason else "")
    writer.add_text("kale/state", text, walltime=trial.ended)
    if trial.error:
        writer.add_text("kale/error", f"```\n{trial.error}\n```", walltime=trial.ended)
    if trial.checkpoints:
        writer.add_text("kale/checkpoint", "\n\n".join(trial.checkpoints), walltime=trial.ended)
    end = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.Status.Value(_STATUS.get(trial.state, "STATUS_RUNNING")),
        end_time_secs=trial.ended or trial.started or 0.0)
    writer.file_writer.add_summary(
        _plugin_summary(metadata.SESSION_END_INFO_TAG, session_end_info=end),
        walltime=trial.ended or trial.started)


def summary_writer() -> Any:
    """Return ``torch.utils.tensorboard.SummaryWriter``, or say what to install."""
    require("torch", target="tensorboard", package="torch")
    require("tensorboard", target="tensorboard", package="tensorboard")
    return require("torch.utils.tensorboard", target="tensorboard",
                   package="tensorboard").SummaryWriter


def prepare_root(dir: Path, name: str, *, what: str = "export(to='tensorboard')") -> Path:
    """Make ``DIR/<name>`` for an export, replacing what an earlier export wrote there.

    Raises
    ------
    ConfigError
        When the folder holds files an export did not write (they are left alone).
    """
    root = dir / name
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise ConfigError(
                f"{what}, dir={str(dir)!r}: {root} exists and was not written by an export, "
                "so it is left alone; pass another dir= or name=, or remove it.")
        shutil.rmtree(root)  # an earlier export of this search: replaced, not appended to
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("written by kale_ext.export; replaced by the next export\n")
    return root


def write(data: SearchData, root: Path) -> list[Path]:
    """Write ``data`` under ``root`` (``DIR/<search>``); return the trials' run folders."""
    writer_class = summary_writer()
    hparams = domains(data.definition, data.trials)
    kinds = {name: _kind(domain) for name, domain in hparams.items()}
    metrics: dict[str, None] = {}
    for row in data.rows:
        metrics.update({metric_name(row, k): None for k, v in row.values.items()
                        if number(v) is not None})
    if data.metric and data.best is not None:
        metrics[best_tag(data.metric)] = None
    states = sorted({t.state for t in data.trials})

    top = writer_class(log_dir=str(root))
    try:
        top.file_writer.add_summary(_experiment(hparams, list(metrics), states))
    finally:
        top.close()
    runs = []
    for trial in data.trials:
        run = root / trial.run_name
        writer = writer_class(log_dir=str(run))
        try:
            writer.file_writer.add_summary(session_start(trial, kinds), walltime=trial.started)
            write_rows(writer, data.rows_of(trial.number))
            write_end(writer, trial, data.metric)
        finally:
            writer.close()
        runs.append(run)
    return runs
