"""Learning-rate scaling and warm-up, checked against Horovod's formulas."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import kale_ext as kale
from kale_ext import ConfigError
from kale_ext.training import warmup_factor


def test_scale_rules():
    assert kale.scale_lr(0.1, 4) == pytest.approx(0.4)
    assert kale.scale_lr(0.1, 4, rule="sqrt") == pytest.approx(0.2)
    assert kale.scale_lr(0.1, 4, rule="none") == 0.1
    with pytest.raises(ConfigError, match="rule='cubic'"):
        kale.scale_lr(0.1, 4, rule="cubic")


def test_scale_defaults_to_world_size(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert kale.scale_lr(0.01) == pytest.approx(0.03)


@pytest.mark.parametrize("size", [1, 2, 8])
def test_warmup_matches_horovod(size):
    warmup = 5
    for step in range(8):
        # hvd.callbacks.LearningRateWarmupCallback: lr/size * (epoch*(size-1)/warmup + 1)
        expected = 1 / size * (min(step, warmup) * (size - 1) / warmup + 1)
        assert warmup_factor(step, warmup, size) == pytest.approx(expected)
    assert warmup_factor(0, warmup, size) == pytest.approx(1 / size)
    assert warmup_factor(warmup, warmup, size) == 1.0


def test_lr_warmup_drives_a_real_optimizer():
    model = torch.nn.Linear(2, 1)
    base = kale.scale_lr(0.1, 4)
    opt = torch.optim.SGD(model.parameters(), lr=base)
    sched = kale.lr_warmup(opt, warmup_steps=4, world_size=4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1)  # the single-rank rate
    assert all(b > a for a, b in itertools.pairwise(lrs[:5]))
    assert lrs[4] == lrs[5] == pytest.approx(0.4)
    assert not math.isnan(sum(lrs))


def test_bad_warmup_is_named():
    with pytest.raises(ConfigError, match="warmup_steps=-1"):
        warmup_factor(0, -1, 2)
