"""Liveness: notice reconcile loops that stopped making progress.

Every reconcile loop beats after each pass. A loop that has not beaten for longer than the
allowed age is stalled (a hung API call, a wedged scheduler call, a dead watch that no longer
wakes it): the liveness probe then fails and Kubernetes restarts the operator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class Heartbeats:
    """The last time each live reconcile loop finished a pass (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[Hashable, float] = {}

    def beat(self, key: Hashable) -> None:
        self._last[key] = self._clock()

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)

    def __len__(self) -> int:
        return len(self._last)

    def stalled(self, max_age: float) -> list[Hashable]:
        """Loops whose last pass is older than ``max_age`` seconds, oldest first."""
        now = self._clock()
        old = [(t, k) for k, t in self._last.items() if now - t > max_age]
        return [k for _, k in sorted(old, key=lambda item: item[0])]


class Stalled(RuntimeError):
    """Raised by the liveness probe: the operator is not making progress."""
