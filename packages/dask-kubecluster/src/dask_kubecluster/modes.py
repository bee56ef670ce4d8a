"""How ``KubeCluster`` treats an existing cluster of the same name."""

from __future__ import annotations

import enum


class CreateMode(enum.Enum):
    """What to do when a DaskCluster with the requested name does or does not exist."""

    #: Connect to the cluster if it exists, create it otherwise.
    CREATE_OR_CONNECT = "CREATE_OR_CONNECT"
    #: Create the cluster; fail if one of the same name exists.
    CREATE_ONLY = "CREATE_ONLY"
    #: Connect to an existing cluster; fail if there is none.
    CONNECT_ONLY = "CONNECT_ONLY"

    @classmethod
    def parse(cls, value: CreateMode | str) -> CreateMode:
        """Accept a member or its name, case-insensitively, with a helpful error."""
        if isinstance(value, cls):
            return value
        try:
            return cls[str(value).upper()]
        except KeyError:
            names = ", ".join(m.name for m in cls)
            raise ValueError(f"create_mode={value!r} is not one of {names}") from None

    def may_create(self) -> bool:
        return self is not CreateMode.CONNECT_ONLY

    def may_connect(self) -> bool:
        return self is not CreateMode.CREATE_ONLY
