"""Profile resolution: profiles, keyword overrides, environment variables, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dask.config
import pytest

from kale_ext import config
from kale_ext._errors import ConfigError


def test_default_profile_is_local():
    options = config.resolve()
    assert options["kind"] == "local"
    assert options["backend"] == "dask"
    assert options["workers"] == 2
    assert options["profile"] == "local"


def test_profile_keys_use_underscores():
    options = config.resolve("slurm-dev")
    assert options["interface_host"] == "127.0.0.1"
    assert options["queue"] == "debug"
    assert "interface-host" not in options


def test_keywords_override_profile_and_none_does_not():
    options = config.resolve("slurm-dev", queue="other", memory=None, walltime="00:05:00")
    assert options["queue"] == "other"
    assert options["memory"] == "1GiB"  # None left the profile's value
    assert options["walltime"] == "00:05:00"


def test_unknown_profile_names_known_ones():
    with pytest.raises(ConfigError) as err:
        config.resolve("no-such-site")
    text = str(err.value)
    assert "'no-such-site'" in text
    assert "slurm-dev" in text and "perlmutter-gpu" in text
    assert "kale.profiles" in text


def test_dask_config_set_adds_a_profile():
    with dask.config.set({"kale.profiles.mysite": {"kind": "slurm", "queue": "gpu",
                                                   "cores-per-job": 4}}):
        options = config.resolve("mysite")
    assert options == {"kind": "slurm", "queue": "gpu", "cores_per_job": 4,
                       "profile": "mysite"}


def test_environment_variable_overrides_profile_value():
    # dask reads DASK_* variables at import, so resolve in a fresh interpreter.
    env = dict(os.environ, DASK_KALE__PROFILES__SLURM_DEV__QUEUE="fromenv",
               DASK_KALE__DEFAULT_PROFILE="slurm-dev")
    code = ("import json; from kale_ext import config; "
            "print(json.dumps(config.resolve()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    options = json.loads(out)
    assert options["profile"] == "slurm-dev"
    assert options["queue"] == "fromenv"
    assert options["interface_host"] == "127.0.0.1"  # the rest of the profile stays


def test_a_kind_without_a_profile_takes_that_kinds_own_defaults():
    # The default profile is `local`; its threads_per_worker must not reach a slurm start.
    for kind in ("slurm", "pbs", "sge", "lsf"):
        options = config.resolve(None, kind=kind)
        assert options["kind"] == kind
        assert options["profile"] == kind
        assert "threads_per_worker" not in options
    assert config.resolve(None, kind="local")["profile"] == "local"


def test_a_kind_uses_the_default_profile_when_that_profile_is_of_the_kind():
    with dask.config.set({"kale.default-profile": "slurm-dev"}):
        assert config.resolve(None, kind="slurm")["profile"] == "slurm-dev"
        local = config.resolve(None, kind="local")
    assert local["profile"] == "local" and "queue" not in local


def test_a_kind_with_no_profile_of_its_own_starts_from_nothing():
    with dask.config.set({"kale.profiles": {"local": {"kind": "local", "threads-per-worker": 1}},
                          "kale.default-profile": "local"}):
        options = config.resolve(None, kind="slurm", workers=1)
    assert options == {"kind": "slurm", "workers": 1, "profile": None}


def test_start_cluster_checks_a_kind_with_its_own_defaults():
    # Everything start_cluster checks before a daemon starts, for a kind without a profile.
    from kale_ext.clusters import _dask_jobs

    options = config.resolve(None, kind="slurm", workers=1)
    kw = _dask_jobs.job_kwargs("slurm", options)
    assert kw["cores"] == 1


@pytest.mark.slurm
@pytest.mark.slow
def test_start_cluster_slurm_without_a_profile_on_the_real_slurm():
    import kale_ext as kale

    cluster = kale.start_cluster("slurm", workers=1, walltime="00:10:00")
    try:
        assert cluster.kind == "slurm"
        assert cluster.record.profile == "slurm"
        assert cluster.n_workers() == 1
        assert cluster.submit(sum, [1, 2]).result(timeout=60) == 3
    finally:
        cluster.stop()
