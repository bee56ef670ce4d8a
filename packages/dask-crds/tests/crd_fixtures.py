"""Access to the YAML fixtures: valid manifests from the reference documents, invalid ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent / "fixtures"
VALID_DIR = HERE / "valid"
INVALID_DIR = HERE / "invalid"


def valid_files() -> list[Path]:
    return sorted(VALID_DIR.glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@dataclass(frozen=True)
class InvalidCase:
    path: Path
    expect_path: str
    expect_message: str
    server_rejects: bool

    @property
    def id(self) -> str:
        return self.path.stem

    def document(self) -> dict[str, Any]:
        return load(self.path)


def invalid_cases() -> list[InvalidCase]:
    cases = []
    for path in sorted(INVALID_DIR.glob("*.yaml")):
        header: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("# "):
                break
            key, _, value = line[2:].partition(": ")
            header[key] = value
        cases.append(
            InvalidCase(
                path,
                header["expect-path"],
                header["expect-message"],
                header["server-rejects"] == "yes",
            )
        )
    return cases
