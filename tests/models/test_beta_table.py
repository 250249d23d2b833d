"""The beta-VAE sweep: the posterior's average variance against beta, beside the published table."""

from __future__ import annotations

import itertools
import math

import pytest

from kale_ext import ConfigError
from kale_ext.models import BETA_TABLE_PUBLISHED, BETAS_PUBLISHED, beta_sweep, beta_table


def test_published_table_covers_the_sweep() -> None:
    assert BETAS_PUBLISHED == (1.0, 0.5, 0.05, 5e-3, 5e-4, 5e-5, 5e-6, 0.0)
    assert set(BETA_TABLE_PUBLISHED) == set(BETAS_PUBLISHED)
    published = [BETA_TABLE_PUBLISHED[b][0] for b in (0.05, 5e-3, 5e-4, 5e-5)]
    assert published == [0.864, 0.555, 0.378, 0.097]
    assert BETA_TABLE_PUBLISHED[1.0] == (1.0, 0.0) and BETA_TABLE_PUBLISHED[0.0][0] == 0.0


def test_beta_table_sets_measured_beside_published() -> None:
    table = beta_table([0.0, 0.05, 0.3], [0.01, 0.9, 0.99], [0.2, 0.01, 0.0])
    assert list(table.columns) == ["beta", "avg var", "avg mean", "published avg var",
                                   "published avg mean"]
    assert table["beta"].tolist() == [0.3, 0.05, 0.0]  # largest beta first
    assert table["published avg var"].tolist()[1:] == [0.864, 0.0]
    assert math.isnan(table["published avg var"][0])  # 0.3 was not published
    with pytest.raises(ConfigError, match="one avg var and one avg mean per beta"):
        beta_table([0.1, 0.2], [0.5], [0.0])


def test_posterior_variance_rises_with_beta_from_zero_to_one() -> None:
    table = beta_sweep(config={"epochs": 10, "latent_dim": 8})
    assert table["beta"].tolist() == sorted(BETAS_PUBLISHED, reverse=True)
    var = table["avg var"].tolist()[::-1]  # by increasing beta
    # monotone, up to the noise of a variance that has saturated at either end
    assert all(b >= a - 2e-3 for a, b in itertools.pairwise(var)), var
    assert var[-1] > 0.99 and abs(table["avg mean"][0]) < 0.01  # beta = 1: the prior
    assert var[0] < 0.05  # beta = 0: a plain autoencoder, the variance shrinks away
    middle = dict(zip(table["beta"], table["avg var"], strict=True))[5e-3]
    assert 0.2 < middle < 0.95, middle  # the transition lies between the ends
