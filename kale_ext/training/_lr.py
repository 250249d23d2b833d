"""Learning-rate scaling and warm-up for data-parallel training, as Horovod users know them.

With ``world_size`` ranks each step averages gradients over ``world_size`` times the
batch, so the learning rate is scaled with the world size (Goyal et al., 2017) and
reached gradually: the warm-up starts at the single-rank rate and ramps linearly to the
scaled one, like ``hvd.callbacks.LearningRateWarmupCallback``.
"""

from __future__ import annotations

import math
from typing import Any

from kale_ext._errors import ConfigError

_RULES = ("linear", "sqrt", "none")


def scale_lr(lr: float, world_size: int | None = None, *, rule: str = "linear") -> float:
    """Return ``lr`` scaled for ``world_size`` ranks.

    The result is ``lr * world_size`` (``rule="linear"``), ``lr * sqrt(world_size)``
    (``"sqrt"``, common for Adam) or ``lr`` (``"none"``).

    ``world_size`` defaults to this process's (:func:`kale.world_size`).
    """
    if rule not in _RULES:
        raise ConfigError(f"rule must be one of {', '.join(_RULES)}, but got rule={rule!r}.")
    if world_size is None:
        from kale_ext.training._env import world_size as current_world_size

        world_size = current_world_size()
    if world_size < 1:
        raise ConfigError(f"world_size must be >= 1, but got {world_size}.")
    factor = {"linear": float(world_size), "sqrt": math.sqrt(world_size), "none": 1.0}[rule]
    return lr * factor


def warmup_factor(step: int, warmup_steps: int, world_size: int) -> float:
    """Multiplier of the scaled learning rate at ``step`` (0-based) of a linear warm-up.

    Starts at ``1 / world_size`` (the unscaled rate) and reaches 1 after ``warmup_steps``
    steps: Horovod's ``lr / size * (step * (size - 1) / warmup + 1)``.
    """
    if warmup_steps < 0 or world_size < 1:
        raise ConfigError(f"warmup_steps must be >= 0 and world_size >= 1, but got "
                          f"warmup_steps={warmup_steps}, world_size={world_size}.")
    if step >= warmup_steps:
        return 1.0
    return (step * (world_size - 1) / warmup_steps + 1) / world_size


def lr_warmup(optimizer: Any, warmup_steps: int, world_size: int | None = None) -> Any:
    """Return a ``torch.optim.lr_scheduler.LambdaLR`` that warms ``optimizer`` up.

    Build the optimizer with the scaled rate (:func:`scale_lr`), then call the
    scheduler's ``step()`` after every optimizer step: the rate ramps from the
    unscaled value to the scaled one over ``warmup_steps`` steps and stays there.
    Chain it with a decay schedule through ``torch.optim.lr_scheduler.SequentialLR``.
    """
    from torch.optim.lr_scheduler import LambdaLR

    if world_size is None:
        from kale_ext.training._env import world_size as current_world_size

        world_size = current_world_size()
    size = int(world_size)
    warmup_factor(0, warmup_steps, size)  # validate now, not at the first step
    return LambdaLR(optimizer, lambda step: warmup_factor(step, warmup_steps, size))
