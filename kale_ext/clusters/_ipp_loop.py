"""The asyncio loop thread where every ipyparallel launcher of this process lives."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class IppLoop:
    """One asyncio loop thread per process where every ipyparallel launcher lives.

    Launchers bind to the loop they start on; keeping them all on one thread works the
    same in a Jupyter kernel (whose own loop is running) and in a plain script.
    """

    _instance: IppLoop | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="kale-ipp-loop", daemon=True).start()

    @classmethod
    def get(cls) -> IppLoop:
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())
