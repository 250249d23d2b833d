"""The migration margin: read from kale's config, checked, and scaled to short lifetimes."""

from __future__ import annotations

import dask.config
import pytest

from kale_ext._errors import SearchError
from kale_ext.search._migration import DEFAULT_MARGIN, Migrations, margin_for, margin_setting


def test_margin_defaults_and_scales_to_a_quarter_of_short_lifetimes():
    assert margin_setting() == DEFAULT_MARGIN
    assert margin_for(48.0, DEFAULT_MARGIN) == 12.0  # the test bed's one-minute queue
    assert margin_for(3600.0, DEFAULT_MARGIN) == DEFAULT_MARGIN
    with dask.config.set({"kale.migration-margin": 30}):
        assert Migrations().margin == 30.0


@pytest.mark.parametrize("value", ["soon", -5, None])
def test_a_bad_margin_is_refused_with_the_rule(value):
    with dask.config.set({"kale.migration-margin": value}), \
            pytest.raises(SearchError, match=r"kale\.migration-margin is .*seconds >= 0"):
        margin_setting()
