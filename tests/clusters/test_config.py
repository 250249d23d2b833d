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
from tests.conftest import worker_pages


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
        # The worker in its job listens on the node's interfaces: no page, no dashboard.
        pages = worker_pages(cluster.client)
        assert pages and set(pages.values()) == {404}, pages
    finally:
        cluster.stop()


# -- checks before anything starts ------------------------------------------------------
HOSTILE = ["60; id", "$(id)", "`id`", "60\n#SBATCH --uid=0", "6 0", "60 && rm -rf ~", "|id"]


def _refused(match: str, **keywords: object) -> str:
    from kale_ext.clusters import check_start

    with pytest.raises(ConfigError) as err:
        check_start(**keywords)  # type: ignore[arg-type]
    text = str(err.value)
    assert match in text, text
    return text


def test_tls_false_needs_the_explicit_opt_in():
    text = _refused("tls=False", kind="local", tls=False)
    assert "'off-i-know'" in text
    for value in ("no", 0, "false", "", []):
        _refused("tls=", kind="local", tls=value)
    _refused("tls=False", kind="slurm", tls=False)


def test_tls_off_i_know_passes_the_checks():
    from kale_ext.clusters import check_start

    backend, kind, options = check_start("local", tls="off-i-know")
    assert (backend, kind, options["tls"]) == ("dask", "local", "off-i-know")


def test_a_plaintext_scheduler_never_listens_on_every_interface():
    for host in ("*", "0.0.0.0", "::", "[::]", ""):
        text = _refused("interface_host=", kind="local", tls="off-i-know", interface_host=host)
        assert "every interface" in text
    # With TLS a scheduler may listen everywhere: its keys guard it.
    from kale_ext.clusters import check_start

    check_start("local", interface_host="0.0.0.0")


def test_start_cluster_goes_through_the_checks_and_starts_nothing():
    import kale_ext as kale
    from kale_ext import registry
    from kale_ext.clusters import check_start

    # start_cluster refuses what check_start refuses, with the same words, before it starts.
    for kind, keywords in (("local", {"tls": False}), ("slurm-dev", {"death_timeout": "60; id"}),
                           ("slurm", {"memory": "-2GB"}), ("local", {"idle_timeout": []}),
                           ("pbs", {"backend": "ipyparallel", "queue": "a;b"})):
        with pytest.raises(ConfigError) as checked:
            check_start(kind, workers=1, **keywords)
        with pytest.raises(ConfigError) as started:
            kale.start_cluster(kind, workers=1, **keywords)
        assert str(started.value) == str(checked.value)
    assert list(registry.records("clusters")) == []
    assert not any(registry.kind_dir("clusters").glob("kc-*"))


@pytest.mark.parametrize("value", [*HOSTILE, -1, 0, float("nan"), float("inf"), True, "abc",
                                   [60], 10**12])
def test_death_timeout_is_a_duration(value):
    text = _refused("death_timeout=", kind="slurm", death_timeout=value)
    assert repr(value) in text and "seconds" in text


def test_death_timeout_reaches_the_script_as_a_number():
    from kale_ext.clusters import _dask_jobs

    for value, written in ((90, "--death-timeout 90 "), ("2 minutes", "--death-timeout 120 "),
                           (1.5, "--death-timeout 1.5 ")):
        options = config.resolve("slurm-dev", death_timeout=value)
        assert written in _dask_jobs.job_script("slurm", options)


@pytest.mark.parametrize(("key", "value"), [
    ("lifetime_margin", "x"), ("lifetime_margin", float("nan")), ("lifetime_margin", -5),
    ("lifetime_margin", "$(id)"), ("memory", "-2GB"), ("memory", "2GB; id"), ("memory", 0),
    ("memory", 1), ("memory", "1000kB"),
    ("idle_timeout", float("nan")), ("idle_timeout", "1h; id"), ("pin", "no"),
    ("local_directory", "/tmp/a\nb"), ("interface_host", "$(id)"),
    ("dashboard_address", ":8787; id"), ("cores", "4; id"), ("queue", "debug\n#SBATCH -A x"),
    ("job_extra", ["--comment=$(id)"]), ("worker_options", {"a b": 1}),
])
def test_every_value_of_a_batch_start_is_checked(key, value):
    text = _refused(f"{key}", kind="slurm", **{key: value})
    # A list or mapping is named by its offending item.
    shown = value[0] if isinstance(value, list) else next(iter(value), value) \
        if isinstance(value, dict) else value
    assert repr(shown) in text or repr(str(shown)) in text


@pytest.mark.parametrize(("key", "value"), [
    ("threads_per_worker", "2; id"), ("threads_per_worker", 0), ("threads_per_worker", True),
    ("memory", "lots"), ("dashboard_address", "$(id):1"), ("idle_timeout", -1),
])
def test_every_value_of_a_local_start_is_checked(key, value):
    _refused(f"{key}", kind="local", **{key: value})


def test_quoted_values_stay_one_word_of_the_worker_command():
    import shlex

    from kale_ext.clusters import _dask_jobs

    options = config.resolve("slurm-dev", local_directory="/tmp/a b;$(id)",
                             worker_options={"resources": "GPU=1; id"})
    script = _dask_jobs.job_script("slurm", options)
    command = next(line for line in script.splitlines() if "dask_worker" in line)
    words = shlex.split(command)
    assert words[words.index("--local-directory") + 1] == "/tmp/a b;$(id)"
    assert words[words.index("--resources") + 1] == "GPU=1; id"


@pytest.mark.slow
def test_a_plaintext_local_cluster_starts_on_loopback_with_the_opt_in(caplog):
    import kale_ext as kale

    with caplog.at_level("WARNING", logger="kale_ext.clusters"):
        c = kale.start_cluster("local", workers=1, tls="off-i-know")
    assert "without TLS" in caplog.text and "plaintext" in caplog.text
    try:
        assert c.record.address.startswith("tcp://127.0.0.1:")
        assert c.record.security is None
        assert c.submit(len, "abc").result(timeout=60) == 3
    finally:
        c.stop()
