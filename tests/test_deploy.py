"""The site profiles under deploy/profiles load through dask's config and render job
scripts for their batch systems; the JupyterHub and container recipes parse."""

from __future__ import annotations

import ast
from pathlib import Path

import dask.config
import pytest
import yaml

from kale_ext import config
from kale_ext.clusters import _dask_jobs
from kale_ext.clusters._ipp_launchers import ENGINE_LAUNCHERS, launcher_traits

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SITE_FILES = sorted((DEPLOY / "profiles").glob("*.yaml"))
DIRECTIVE = {"slurm": "#SBATCH", "pbs": "#PBS", "sge": "#$", "lsf": "#BSUB"}


def _site_profiles() -> list[tuple[str, str]]:
    out = []
    for path in SITE_FILES:
        for name in yaml.safe_load(path.read_text())["kale"]["profiles"]:
            out.append((path.name, name))
    return out


def test_there_are_site_files():
    assert {p.name for p in SITE_FILES} >= {"nersc-perlmutter.yaml", "generic-slurm.yaml",
                                             "pbs-lsf-sge.yaml"}


@pytest.mark.parametrize(("filename", "name"), _site_profiles())
def test_site_profile_renders_a_job_script(filename, name, tmp_path):
    site = yaml.safe_load((DEPLOY / "profiles" / filename).read_text())
    with dask.config.set(dask.config.merge(dask.config.config, site)):
        options = config.resolve(name)
    kind, backend = options.pop("kind"), options.pop("backend")
    options.pop("profile")
    if backend == "dask":
        script = _dask_jobs.job_script(kind, options)
    else:
        launcher = ENGINE_LAUNCHERS[kind](
            profile_dir=str(tmp_path), cluster_id="kc-site", engine_set_id="s1",
            batch_file_name=str(tmp_path / "job.sh"),
            **launcher_traits(kind, {k: v for k, v in options.items()
                                     if k not in ("workers", "engines_per_job")}),
        )
        script = launcher.render(options.get("engines_per_job") or 1)
    assert DIRECTIVE[kind] in script
    if options.get("queue"):
        assert str(options["queue"]) in script
    if options.get("constraint"):
        assert str(options["constraint"]) in script
    for line in options.get("prologue") or []:
        assert line in script


def test_jupyterhub_config_is_python():
    ast.parse((DEPLOY / "jupyterhub" / "jupyterhub_config.py").read_text())


def test_container_recipe_installs_the_pinned_torch():
    recipe = (DEPLOY / "container" / "Apptainer.def").read_text()
    assert "torch==2.13.0" in recipe and "kale-ext" in recipe
