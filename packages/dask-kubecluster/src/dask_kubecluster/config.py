"""The ``kubernetes`` dask config section: KubeCluster's defaults.

Registered like other dask projects do: the YAML shipped in this package is added to dask's
defaults on import, so ``dask.config.get("kubernetes.image")`` works and users override keys in
their dask config files or with ``DASK_KUBERNETES__*`` environment variables.
"""

from __future__ import annotations

import getpass
import re
import uuid
from pathlib import Path
from typing import Any, Final, cast

import dask.config
import yaml

CONFIG_PATH: Final = Path(__file__).with_name("kubernetes.yaml")


def _load_defaults() -> dict[str, Any]:
    with CONFIG_PATH.open() as f:
        return cast(dict[str, Any], yaml.safe_load(f))


DEFAULTS: Final = _load_defaults()
dask.config.update_defaults(DEFAULTS)


def get(key: str, override: Any = None) -> Any:
    """``override`` unless it is None, else ``kubernetes.<key>`` from the dask config."""
    if override is not None:
        return override
    return dask.config.get(f"kubernetes.{key}")


def _dns_safe(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "user"


def default_name(template: str | None = None) -> str:
    """A cluster name from the ``kubernetes.name`` template (``{user}``, ``{uuid}``)."""
    template = template or str(dask.config.get("kubernetes.name"))
    try:
        user = getpass.getuser()
    except Exception:  # no user database entry, e.g. an arbitrary UID in a container
        user = "user"
    return template.format(user=_dns_safe(user)[:20], uuid=uuid.uuid4().hex[:10])
