"""``kale.cached(key, loader)``: a dataset loaded once per worker, kept across runs.

A re-run of a notebook cell should not read and decode its data again. Where the
value is kept depends on where the training code runs:

* A search trial on one worker runs in the worker's process: the value stays in that
  process, and every later trial there gets the same object.
* A rank of :func:`kale.train_distributed` (or of a search trial with
  ``workers_per_trial > 1``) runs in a process forked from its worker's zygote (see
  :mod:`._zygote`), which ends with the run. The first run that loads ``key`` on a
  worker pickles the value into the zygote's cache folder; the zygote reads it back
  before its next fork, so every later rank on that worker starts with the value
  already in memory (shared copy-on-write: a rank that changes it changes its own copy).
* Elsewhere (a rank started with ``warm=False``, plain code in the kernel) the value
  stays in the calling process only.

Values must pickle, and stay on the host: the zygote never touches a GPU, so a value
holding CUDA tensors is refused (load to the CPU and move it with ``.to(kale.device())``
after). The zygote reseeds numpy's and torch's generators at every fork, so a loader
that draws random numbers changes no later run's random stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kale_ext._errors import ConfigError

T = TypeVar("T")

#: The zygote's cache folder, in the environment of the ranks it forks.
CACHE_DIR_ENV = "KALE_CACHE_DIR"

_values: dict[str, Any] = {}
_lock = threading.Lock()
_loading: dict[str, threading.Lock] = {}  # one loader per key at a time in a process


def cached(key: str, loader: Callable[[], T]) -> T:
    """Return ``loader()``, loaded once per worker and kept for later runs and trials.

    The first call with ``key`` on a worker calls ``loader``; later calls there, in
    the same run, a later run or a later trial, return the kept value without calling
    it. Different keys never share a value: name the key after what the loader reads
    (``f"mnist-{split}"``), since a changed loader under the same key is not called
    again on a worker that has the key.

    Parameters
    ----------
    key : str
        Names the value on the worker.
    loader : callable
        Takes no arguments and returns the value (a dataset, tensors, arrays).

    Returns
    -------
    object
        The value. Treat it as read-only: trials that run in the worker's own process
        share one object.

    Raises
    ------
    kale_ext.ConfigError
        When ``key`` is not a non-empty string or ``loader`` is not callable, or when
        the value cannot be kept for later runs (it does not pickle, or holds CUDA
        tensors).

    Examples
    --------
    >>> def train(config):
    ...     data = kale.cached("mnist-train", lambda: torchvision.datasets.MNIST(...))
    """
    if not isinstance(key, str) or not key:
        raise ConfigError(f"kale.cached: key must be a non-empty string naming the data, but "
                          f"got {key!r}. Pass e.g. kale.cached('mnist-train', loader).")
    if not callable(loader):
        raise ConfigError(f"kale.cached({key!r}, ...): loader must be a function taking no "
                          f"arguments that returns the data, but got {loader!r}. Pass e.g. "
                          f"lambda: load(path).")
    with _lock:
        if key in _values:
            return _values[key]
        once = _loading.setdefault(key, threading.Lock())
    with once:
        with _lock:
            if key in _values:
                return _values[key]
        value = loader()
        folder = os.environ.get(CACHE_DIR_ENV)
        if folder and os.path.isdir(folder):
            _hand_over(folder, key, value)
        with _lock:
            _values[key] = value
            _loading.pop(key, None)
    return value


def _file(folder: str, key: str) -> str:
    return os.path.join(folder, hashlib.sha256(key.encode()).hexdigest() + ".pkl")


def _hand_over(folder: str, key: str, value: Any) -> None:
    """Write ``value`` for the zygote to read before its next fork."""
    path = _file(folder, key)
    if os.path.exists(path):
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            _pickler(f, key).dump((key, value))
        os.replace(tmp, path)
    except ConfigError:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    except Exception as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise ConfigError(f"kale.cached({key!r}, ...): the loaded value cannot be kept for "
                          f"later runs on this worker: {type(e).__name__}: {e}. Return "
                          "picklable data (arrays, tensors, lists, datasets without open "
                          "files).") from e


def _pickler(file: Any, key: str) -> Any:
    """Return a cloudpickle pickler that refuses CUDA tensors."""
    import cloudpickle

    class Pickler(cloudpickle.Pickler):
        """Refuses CUDA tensors: the zygote reading them would initialise CUDA."""

        def reducer_override(self, obj: Any) -> Any:
            if getattr(obj, "is_cuda", False) is True:
                raise ConfigError(
                    f"kale.cached({key!r}, ...): the loaded value holds a tensor on "
                    f"{obj.device}; cached data stays in host memory. Load it to the CPU "
                    "and move it after: kale.cached(key, loader).to(kale.device()).")
            return super().reducer_override(obj)

    return Pickler(file, protocol=pickle.HIGHEST_PROTOCOL)


def absorb(folder: str) -> None:
    """Read the values ranks handed over into this process (the zygote, before a fork)."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".pkl"))
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                key, value = pickle.load(f)
        except Exception as e:  # a value that does not load is loaded again by its rank
            print(f"kale rank launcher: could not read the cached value {name}: {e}",
                  file=sys.stderr)
        else:
            _values.setdefault(key, value)
        with contextlib.suppress(OSError):
            os.remove(path)


def keys() -> list[str]:
    """Return the keys this process holds (for tests and diagnostics)."""
    with _lock:
        return sorted(_values)
