"""ipyparallel backend without a running cluster: job scripts, option checks, adaptive policy."""

from __future__ import annotations

import pytest

from kale_ext._errors import ConfigError
from kale_ext.clusters._ipp_adapt import AdaptivePolicy, Adaptor, Decision, QueueSnapshot
from kale_ext.clusters._ipp_launchers import ENGINE_LAUNCHERS, check_options, launcher_traits


def _script(kind: str, tmp_path, n: int = 2, **options) -> str:
    cls = ENGINE_LAUNCHERS[kind]
    launcher = cls(
        profile_dir=str(tmp_path), cluster_id="kc-test", engine_set_id="s1",
        batch_file_name=str(tmp_path / f"{kind}.sh"), **launcher_traits(kind, options),
    )
    return launcher.render(n)


def test_slurm_script_carries_every_knob(tmp_path):
    text = _script("slurm", tmp_path, n=3, queue="debug", account="m1234", qos="interactive",
                   walltime="01:30:00", cores=4, memory="8GiB", gpus_per_worker=1,
                   constraint="gpu&hbm80g", job_extra=["--exclusive", "--gres=nvme:1"],
                   prologue=["module load python", "echo {n} $HOME"])
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh"
    for directive in ("--ntasks=3", "--partition=debug", "--account=m1234", "--qos=interactive",
                      "--time=01:30:00", "--cpus-per-task=4", "--mem-per-cpu=2048M",
                      "--gpus-per-task=1", "--constraint=gpu&hbm80g", "--exclusive",
                      "--gres=nvme:1", "--job-name=ipengine-kc-test"):
        assert f"#SBATCH {directive}" in lines
    # The prologue runs as written (braces are not evaluated) and before srun.
    srun = len(lines) - 1
    assert lines[srun].startswith("srun ") and "ipyparallel.engine" in lines[srun]
    assert lines.index("module load python") < lines.index("echo {n} $HOME") < srun
    # Every directive precedes the first command, or the batch system would ignore it.
    first_cmd = lines.index("module load python")
    assert all(not line.startswith("#SBATCH") for line in lines[first_cmd:])


@pytest.mark.parametrize("kind, expected", [
    ("pbs", ["#PBS -l select=1:ncpus=2:mem=1024mb", "#PBS -l walltime=00:10:00", "#PBS -A acc",
             "#PBS -q q1", "#PBS -t 1-2"]),
    ("sge", ["#$ -l h_vmem=1024M", "#$ -l h_rt=00:10:00", "#$ -A acc", "#$ -q q1"]),
    ("lsf", ["#BSUB -n 2", "#BSUB -M 1024MB", "#BSUB -W 00:10:00", "#BSUB -P acc", "#BSUB -q q1"]),
])
def test_other_batch_systems_scripts(tmp_path, kind, expected):
    text = _script(kind, tmp_path, queue="q1", account="acc", walltime="00:10:00", cores=2,
                   memory="1GiB")
    stripped = [line.strip() for line in text.splitlines()]
    for line in expected:
        assert line in stripped, f"{line!r} missing from\n{text}"


HOSTILE = [
    "debug\n#SBATCH --uid=0",
    "debug; rm -rf ~",
    "$(touch /tmp/owned)",
    "`id`",
    "debug --account other",
    "{__import__('os').system('id')}",
    "a'b",
    'a"b',
    "a|b",
    " ",
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("key", ["queue", "account", "qos"])
def test_hostile_names_are_rejected_before_anything_runs(key, value):
    with pytest.raises(ConfigError, match=key):
        launcher_traits("slurm", {key: value})


@pytest.mark.parametrize("options, key", [
    ({"walltime": "1h; reboot"}, "walltime"),
    ({"walltime": "tomorrow"}, "walltime"),
    ({"constraint": "gpu\n#SBATCH --x"}, "constraint"),
    ({"constraint": "gpu;id"}, "constraint"),
    ({"job_extra": ["--exclusive\nsrun evil"]}, "job_extra"),
    ({"job_extra": ["--comment=$(id)"]}, "job_extra"),
    ({"job_extra": ["not-a-flag"]}, "job_extra"),
    ({"memory": "lots"}, "memory"),
    ({"cores": -1}, "cores"),
    ({"gpus_per_worker": "2; id"}, "gpus_per_worker"),
    ({"prologue": ["ok", "two\nlines"]}, "prologue"),
])
def test_hostile_resources_are_rejected(options, key):
    with pytest.raises(ConfigError, match=key):
        launcher_traits("slurm", options)


def test_hostile_strings_never_reach_a_script(tmp_path):
    # Directive values can only be safe tokens; prove that the one free-form field,
    # the prologue, is substituted literally and the formatter evaluates nothing.
    text = _script("slurm", tmp_path, queue="debug",
                   prologue=["echo {__import__('os').getpid()} {n} {queue}"])
    assert "echo {__import__('os').getpid()} {n} {queue}" in text.splitlines()


def test_options_are_checked_by_name():
    with pytest.raises(ConfigError, match="wallclock"):
        check_options("slurm", {"wallclock": "01:00:00"})
    with pytest.raises(ConfigError, match="engines_per_job"):
        check_options("slurm", {"engines_per_job": 0})
    with pytest.raises(ConfigError, match="interface_host"):
        check_options("slurm", {"interface_host": "127.0.0.1; id"})
    # Dask-only profile keys are ignored rather than refused: profiles are shared.
    assert check_options("local", {"threads_per_worker": 1, "workers": 2}) == {"workers": 2}


# ------------------------------------------------------------------ adaptive policy


def snap(engines, requested=None, unassigned=0, busy=0, idle=None) -> QueueSnapshot:
    requested = engines if requested is None else requested
    idle = tuple(range(busy, engines)) if idle is None else idle
    return QueueSnapshot(engines, requested, unassigned, busy, idle)


def test_policy_scales_up_at_once_to_cover_waiting_tasks():
    policy = AdaptivePolicy(1, 8)
    assert policy.decide(snap(2, busy=2, unassigned=3)).target == 5
    assert policy.decide(snap(2, busy=2, unassigned=30)).target == 8  # capped at maximum


def test_policy_scales_down_to_busy_engines_only_after_wait_count():
    policy = AdaptivePolicy(1, 8, wait_count=3)
    quiet = snap(4, busy=1)
    assert [policy.decide(quiet).target for _ in range(2)] == [4, 4]
    decision = policy.decide(quiet)
    assert decision == Decision(1, (1, 2, 3))  # retires the idle engines
    # Any burst of work resets the count.
    policy.decide(quiet)
    policy.decide(snap(4, busy=4))
    assert policy.decide(quiet).target == 4


def test_policy_respects_bounds_and_pending_engines():
    policy = AdaptivePolicy(2, 4, wait_count=1)
    assert policy.decide(snap(0, requested=0)).target == 2  # minimum even when idle
    assert policy.decide(snap(6, busy=0)).target == 4  # above maximum: shrink at once
    # Engines still starting count as requested: no extra jobs for the same tasks.
    assert policy.decide(snap(1, requested=3, busy=1, unassigned=2)).target == 3
    # Not scaled down while engines are still starting.
    assert policy.decide(snap(2, requested=4, busy=0)).target == 4


@pytest.mark.parametrize("args", [(3, 2), (-1, 2), (1, 2.5), (True, 2)])
def test_policy_rejects_bad_bounds(args):
    with pytest.raises(ConfigError):
        AdaptivePolicy(*args)


def test_adaptor_acts_only_when_the_decision_changes_the_request():
    snapshots = [snap(1, busy=1, unassigned=2), snap(3, busy=3), snap(3, busy=0)]
    scaled: list[Decision] = []
    adaptor = Adaptor(AdaptivePolicy(1, 4, wait_count=1), lambda: snapshots.pop(0), scaled.append)
    adaptor.step()
    adaptor.step()
    adaptor.step()
    assert scaled == [Decision(3), Decision(1, (0, 1))]
