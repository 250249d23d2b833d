"""Generated job scripts: the options they carry and the strings they refuse."""

from __future__ import annotations

import shlex

import pytest

from kale_ext import config
from kale_ext._errors import ConfigError
from kale_ext.clusters import _dask_jobs
from kale_ext.clusters._dask_jobs import job_script, lifetime_args, walltime_seconds


def _slurm(**overrides):
    return config.resolve("slurm-dev", **overrides)


def _worker_line(script: str) -> list[str]:
    line = next(ln for ln in script.splitlines() if "distributed.cli.dask_worker" in ln)
    return shlex.split(line)


def test_slurm_script_carries_profile_options(tmp_path):
    script = job_script("slurm", _slurm(account="m1234", qos="interactive",
                                        constraint="gpu&hbm80g", gpus_per_worker=4,
                                        cores=4, processes=2, job_extra=["--exclusive"],
                                        prologue=["module load python"]),
                        security_dir=tmp_path)
    header = [ln for ln in script.splitlines() if ln.startswith("#SBATCH")]
    assert "#SBATCH -p debug" in header
    assert "#SBATCH -A m1234" in header
    assert "#SBATCH --qos=interactive" in header
    assert "#SBATCH --constraint=gpu&hbm80g" in header
    assert "#SBATCH --gpus=4" in header
    assert "#SBATCH --exclusive" in header
    assert "#SBATCH -t 00:30:00" in header
    assert "#SBATCH --mem=1G" in header
    assert "module load python" in script.splitlines()
    args = _worker_line(script)
    assert args[args.index("--resources") + 1] == "GPU=2"  # 4 GPUs over 2 processes
    assert args[args.index("--nworkers") + 1] == "2"
    assert args[args.index("--tls-ca-file") + 1] == str(tmp_path / "ca.pem")
    assert args[args.index("--lifetime") + 1] == "1500s"  # 30 min minus a 300 s margin


@pytest.mark.parametrize("kind, account_line", [
    ("pbs", "#PBS -A acct"), ("sge", "#$ -P acct"), ("lsf", '#BSUB -P "acct"')])
def test_one_table_serves_every_system(kind, account_line):
    walltime = "01:00" if kind == "lsf" else "01:00:00"
    script = job_script(kind, {"cores": 2, "memory": "1GiB", "walltime": walltime,
                               "queue": "q1", "account": "acct"})
    assert account_line in script
    assert "q1" in script
    assert _worker_line(script)[_worker_line(script).index("--lifetime") + 1] == "3300s"


@pytest.mark.parametrize("key, value", [
    ("queue", "debug\n#SBATCH --uid=0"),
    ("queue", "debug; rm -rf ~"),
    ("queue", "$(reboot)"),
    ("account", "acct`id`"),
    ("job_name", "kale job"),
    ("job_name", "x\ry"),
    ("qos", "normal|x'"),
    ("walltime", "01:00:00\nrm -rf ~"),
    ("constraint", "gpu\n"),
    ("job_extra", ["--mail-user=$(id)"]),
    ("job_extra", ["--comment='x'"]),
    ("prologue", ["module load a\nrm -rf ~"]),
    ("interface", "ib0;ls"),
    ("worker_options", {"bad name": "x"}),
])
def test_hostile_strings_are_refused(key, value):
    with pytest.raises(ConfigError) as err:
        job_script("slurm", _slurm(**{key: value}))
    assert key.split("_")[0] in str(err.value)


def test_worker_command_values_are_quoted():
    hostile = "GPU=1; rm -rf ~ $(id) `id`"
    script = job_script("slurm", _slurm(worker_options={"resources": hostile,
                                                        "local_directory": "/scratch/a b"}))
    args = _worker_line(script)
    # Each hostile value is one argument after the shell reads the line.
    assert args[args.index("--resources") + 1] == hostile
    assert args[args.index("--local-directory") + 1] == "/scratch/a b"
    assert args[0].endswith("python")


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match="partition"):
        job_script("slurm", _slurm(partition="debug"))
    with pytest.raises(ConfigError, match="queue"):
        _dask_jobs.check_keys("local", {"queue": "debug"})


def test_option_only_some_systems_have():
    with pytest.raises(ConfigError, match="qos has no pbs equivalent"):
        job_script("pbs", {"cores": 1, "memory": "1GiB", "qos": "high"})


@pytest.mark.parametrize("value, error", [
    ({"cores": 0}, "cores must be a positive integer"),
    ({"cores": 1, "processes": 2}, "processes=2 exceeds cores=1"),
    ({"memory": "lots"}, "memory='lots' is not a size"),
    ({"prologue": "module load x"}, "prologue must be a list"),
])
def test_bad_values_say_the_rule(value, error):
    with pytest.raises(ConfigError, match=error):
        job_script("slurm", _slurm(**value))


@pytest.mark.parametrize("kind, text, seconds", [
    ("slurm", "30", 1800), ("slurm", "05:30", 330), ("slurm", "01:00:00", 3600),
    ("slurm", "1-02", 93600), ("slurm", "1-00:00:10", 86410),
    ("pbs", "3600", 3600), ("pbs", "01:00:00", 3600), ("lsf", "90", 5400),
    ("lsf", "01:30", 5400),
])
def test_walltime_seconds(kind, text, seconds):
    assert walltime_seconds(kind, text) == seconds


def test_lifetime_margin_shrinks_for_short_walltimes():
    assert lifetime_args("slurm", "01:00:00", 300) == [
        "--lifetime", "3300s", "--lifetime-stagger", "150s"]
    # 2 minutes: a 300 s margin would not fit; a fifth of the walltime is kept.
    assert lifetime_args("slurm", "2", 300) == [
        "--lifetime", "96s", "--lifetime-stagger", "12s"]
    assert lifetime_args("slurm", None, 300) == []


def test_state_dir_with_shell_characters_is_refused(tmp_path):
    folder = tmp_path / "a b;c"
    with pytest.raises(ConfigError, match="DASK_KALE__STATE_DIR"):
        job_script("slurm", _slurm(), security_dir=folder)
