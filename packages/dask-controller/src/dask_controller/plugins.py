"""Plugins: modules registered under the ``dask_operator_plugin`` entry-point group.

Importing a plugin registers its kopf handlers. A plugin that fails to import is logged with its
name and the error, and the operator starts without it.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

logger = logging.getLogger(__name__)

GROUP = "dask_operator_plugin"


def discover() -> list[EntryPoint]:
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def load_plugins(eps: list[EntryPoint] | None = None) -> tuple[list[str], dict[str, str]]:
    """Import every plugin; returns (loaded names, {failed name: error})."""
    loaded: list[str] = []
    failed: dict[str, str] = {}
    for ep in discover() if eps is None else eps:
        try:
            ep.load()
        except Exception as exc:  # a bad plugin must not stop the operator
            failed[ep.name] = f"{type(exc).__name__}: {exc}"
            logger.error(
                "dask operator plugin %r (%s) failed to load and is skipped: %s",
                ep.name, ep.value, failed[ep.name],
            )  # fmt: skip
        else:
            loaded.append(ep.name)
            logger.info("loaded dask operator plugin %r (%s)", ep.name, ep.value)
    return loaded, failed
