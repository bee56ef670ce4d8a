"""Feedback while a cluster starts: a rich status line unless ``quiet``."""

from __future__ import annotations

import datetime
import logging
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.status import Status

logger = logging.getLogger("dask_kubecluster")


class StartupStatus:
    """A spinner with the current step; every change is logged and kept in ``history``."""

    def __init__(self, title: str, quiet: bool, console: Console | None = None) -> None:
        self.title = title
        self.quiet = quiet
        self.history: list[tuple[datetime.datetime, str]] = []
        self._console = console
        self._status: Status | None = None
        self._last = ""

    def __enter__(self) -> StartupStatus:
        if not self.quiet:
            console = self._console or Console(stderr=True)
            self._console = console
            self._status = console.status(f"[bold]{self.title}[/bold]")
            self._status.start()
        return self

    def update(self, message: str) -> None:
        if message == self._last:
            return
        self._last = message
        self.history.append((datetime.datetime.now(), message))
        logger.info("%s: %s", self.title, message)
        if self._status is not None:
            self._status.update(f"[bold]{self.title}[/bold]: {message}")

    def done(self, message: str) -> None:
        self.history.append((datetime.datetime.now(), message))
        logger.info("%s: %s", self.title, message)
        self._stop()
        if not self.quiet and self._console is not None:
            self._console.print(f"[green]✔[/green] {self.title}: {message}", highlight=False)

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> Any:
        self._stop()
        if exc is not None:
            self.history.append((datetime.datetime.now(), f"failed: {exc}"))
        return None
