"""What every trainable shares: seeding, optimizers, resuming and checkpointing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from kale_ext._errors import ConfigError
from kale_ext.trial import load_checkpoint, save_checkpoint
from kale_ext.trial import report as kale_report

OPTIMIZERS = ("Adam", "AdamW", "SGD", "RMSprop")


def setup(config: dict[str, Any]) -> torch.Generator:
    """Seed torch from ``config["seed"]``, use ``config["threads"]`` (default 1) threads."""
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    # one thread per trial: a worker runs several trials side by side
    torch.set_num_threads(int(config.get("threads", 1)))
    return torch.Generator().manual_seed(seed)


def device(config: dict[str, Any]) -> torch.device:
    """Return the torch device named by ``config["device"]``.

    The name is "cpu" (default), "cuda", "cuda:N", or "auto" (a GPU where there is one).
    """
    name = str(config.get("device", "cpu"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"config['device'] = {name!r} is not a torch device; use 'cpu', "
                          "'cuda', 'cuda:N' or 'auto'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config['device'] = {name!r} but torch sees no CUDA GPU here; use "
                          "'cpu', or 'auto' to take a GPU only where there is one")
    return dev


def optimizer(params: Any, config: dict[str, Any], prefix: str = "",
              **defaults: Any) -> torch.optim.Optimizer:
    """Return the optimizer of ``params`` that ``config`` names.

    The name is ``config[prefix + "optimizer"]`` (default "Adam") and the learning rate
    ``config[prefix + "lr"]``; ``defaults`` are further arguments of the optimizer.
    """
    name = str(config.get(prefix + "optimizer", "Adam"))
    lr = float(config.get(prefix + "lr", defaults.pop("lr", 1e-3)))
    if name not in OPTIMIZERS:
        raise ConfigError(f"config[{prefix + 'optimizer'!r}] = {name!r} is not one of "
                          f"{list(OPTIMIZERS)}")
    cls = getattr(torch.optim, name)
    if name == "SGD":
        defaults.setdefault("momentum", float(config.get("momentum", 0.9)))
        defaults.pop("betas", None)
    if name == "RMSprop":
        defaults.pop("betas", None)
    return cls(params, lr=lr, **defaults)


def batches(n: int, size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering ``range(n)``."""
    yield from torch.randperm(n, generator=generator).split(max(int(size), 1))


def resume(modules: dict[str, Any], generator: torch.Generator | None = None) -> int:
    """Load the trial's checkpoint into ``modules`` (models and optimizers) if there is one.

    Returns the first epoch to run (0 when starting fresh).
    """
    state = load_checkpoint()
    if state is None:
        return 0
    for name, module in modules.items():
        module.load_state_dict(state[name])
    if generator is not None and "rng" in state:
        generator.set_state(state["rng"])
    return int(state["epoch"]) + 1


def checkpoint(modules: dict[str, Any], epoch: int,
               generator: torch.Generator | None = None) -> None:
    """Save ``modules``' state dicts (and the shuffling generator) for ``epoch``."""
    state: dict[str, Any] = {name: m.state_dict() for name, m in modules.items()}
    state["epoch"] = epoch
    if generator is not None:
        state["rng"] = generator.get_state()
    save_checkpoint(state, epoch)


def report(epoch: int, metrics: dict[str, float]) -> None:
    """Report ``metrics`` for ``epoch`` (1-based, as the digits trainable does)."""
    kale_report(epoch=epoch + 1, **metrics)
