"""The arguments of :class:`kale_ext.Search`, checked before anything starts."""

from __future__ import annotations

from typing import Any

from kale_ext._errors import SearchError


def check_arguments(*, fn: Any, mode: Any, trials: Any, retries: Any, workers_per_trial: Any,
                    prefetch: Any, engine: Any, max_concurrent: Any, detach: Any,
                    metric: Any) -> None:
    """Raise :class:`kale.SearchError` naming the first bad argument, its rule and value."""
    if not callable(fn):
        raise SearchError(f"fn must be a callable train(config), but got {fn!r}.")
    if mode not in ("min", "max"):
        raise SearchError(f"mode must be 'min' or 'max', but got mode={mode!r}.")
    for label, value, low in (("trials", trials, 1), ("retries", retries, 0),
                              ("workers_per_trial", workers_per_trial, 1),
                              ("prefetch", prefetch, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SearchError(f"{label} must be an integer >= {low}, but got {value!r}.")
    if engine not in ("torch", "horovod"):
        raise SearchError(f"engine must be 'torch' or 'horovod', but got {engine!r}.")
    if max_concurrent is not None and (not isinstance(max_concurrent, int)
                                       or max_concurrent < 1):
        raise SearchError(
            f"max_concurrent must be a positive integer or None, but got {max_concurrent!r}."
        )
    if detach is not None and not isinstance(detach, bool):
        raise SearchError(f"detach must be True, False or None (kale.search-driver "
                          f"decides), but got {detach!r}.")
    if not isinstance(metric, str) or not metric:
        raise SearchError(f"metric must name a reported metric, but got {metric!r}.")
