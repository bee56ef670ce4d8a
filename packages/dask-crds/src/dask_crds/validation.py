"""Offline validation of Dask resources with errors a human can act on.

:func:`validate` checks one parsed document and returns :class:`Problem` s whose ``path`` is the
dotted field path the API server would name (``spec.worker.spec.containers[0].resources.limit``).
:func:`validate_stream` does the same for multi-document YAML text. :func:`parse` returns the
model or raises :class:`InvalidResource`.

Unknown fields are errors, also inside the embedded Kubernetes types (where the API server would
silently drop them), with a "did you mean" hint when a sibling field is close. One case is a
warning instead: a field of an enclosing Kubernetes object indented one level too deep (the
reference documents put ``initialDelaySeconds`` inside ``tcpSocket``). Kubernetes has always
dropped such fields, manifests that contain them keep being accepted here, and the user is told.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from dask_crds import constants as c
from dask_crds.kubetypes import K8sModel
from dask_crds.models import MODELS, AnyResource

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding: ``path`` is dotted with ``[i]`` list indices; empty for the whole document."""

    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}{prefix}{self.message}"


@dataclass
class DocumentResult:
    """The outcome for one YAML document of a stream."""

    index: int
    kind: str | None
    name: str | None
    problems: list[Problem] = field(default_factory=list)
    skipped: str | None = None  # why a document was not checked (not a Dask resource)
    resource: AnyResource | None = None

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


class InvalidResource(ValueError):
    """A document is not a valid Dask resource; ``problems`` says why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(loc: Sequence[int | str]) -> str:
    """``("spec", "containers", 0, "name")`` -> ``spec.containers[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_path(path: str) -> list[int | str]:
    """``spec.containers[0].name`` -> ``["spec", "containers", 0, "name"]`` (keys without dots)."""
    loc: list[int | str] = []
    for part in path.split("."):
        name, *indices = part.split("[")
        if name:
            loc.append(name)
        loc += [int(i.rstrip("]")) for i in indices]
    return loc


def without(document: Any, paths: Iterable[str]) -> Any:
    """A copy of ``document`` without the fields at ``paths`` (what Kubernetes would drop)."""
    data = _copy(document)
    for path in paths:
        _drop(data, parse_path(path))
    return data


# ------------------------------------------------------------------ walking models along a path


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional from a type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _field_type(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (info.alias, name):
            return info.annotation
    return None


def _models_along(root: type[BaseModel], loc: Sequence[int | str]) -> list[type[BaseModel] | None]:
    """The model at each prefix of ``loc`` (``None`` where the prefix is not a model)."""
    found: list[type[BaseModel] | None] = []
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        found.append(tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            tp = _field_type(tp, part)
        elif origin is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            tp = None
    tp = _unwrap(tp)
    found.append(tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None)
    return found


def _type_at(root: type[BaseModel], loc: Sequence[int | str]) -> Any:
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            tp = _field_type(tp, part)
        elif origin in (list, dict):
            tp = typing.get_args(tp)[-1]
        else:
            return None
    return _unwrap(tp)


def _expected_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        item = typing.get_args(tp)[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            return f"a list of {item.__name__} objects"
        return "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"a {tp.__name__} object"
    names = {int: "an integer", str: "a string", bool: "true or false", float: "a number"}
    return names.get(tp, "") if isinstance(tp, type) else ""


def _aliases(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


# ------------------------------------------------------------------ turning errors into problems


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    return f"{value!r} ({type(value).__name__})"


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "an object (a mapping of names to values)",
    "model_type": "an object (a mapping of field names to values)",
    "model_attributes_type": "an object (a mapping of field names to values)",
}


def _problem(root: type[BaseModel], err: ErrorDetails) -> Problem:
    loc = list(err["loc"])
    path = format_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_field(root, loc, err.get("input"))
    if kind == "missing":
        expected = _expected_type(_type_at(root, loc))
        what = f" (expected {expected})" if expected else ""
        return Problem(path, f"required field is missing{what}")
    if kind in ("too_short", "string_too_short"):
        ctx = err.get("ctx", {})
        unit = "item" if kind == "too_short" else "character"
        n = ctx.get("min_length")
        return Problem(path, f"must have at least {n} {unit}{'s' if n != 1 else ''}")
    if kind in ("too_long", "string_too_long"):
        ctx = err.get("ctx", {})
        unit = "items" if kind == "too_long" else "characters"
        return Problem(path, f"must have at most {ctx.get('max_length')} {unit}")
    if kind in _EXPECTED:
        return Problem(path, f"expected {_EXPECTED[kind]}, got {_describe(err.get('input'))}")
    if kind == "greater_than_equal":
        ctx = err.get("ctx", {})
        return Problem(path, f"must be >= {ctx.get('ge')}, got {_describe(err.get('input'))}")
    if kind == "literal_error":
        return Problem(path, f"{err['msg']}, got {_describe(err.get('input'))}")
    if kind == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
        if msg.startswith("metadata.name"):
            return Problem("metadata.name", msg.split(" ", 1)[1] if " " in msg else msg)
        return Problem(path, msg)
    return Problem(path, err["msg"])


def _unknown_field(root: type[BaseModel], loc: list[int | str], value: Any) -> Problem:
    path = format_path(loc)
    key = str(loc[-1])
    chain = _models_along(root, loc[:-1])
    owner = chain[-1]
    if owner is None:
        return Problem(path, "unknown field")
    allowed = _aliases(owner)
    hint = ""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        hint = f"; did you mean {close[0]!r}?"
    if issubclass(owner, K8sModel):
        # A field of the enclosing Kubernetes object, indented one level too deep.
        depth = len(chain) - 2
        if depth >= 0 and chain[depth] is None:
            depth -= 1  # the owner is an item of a list: look at the object holding the list
        outer = chain[depth] if depth >= 0 else None
        if outer is not None and issubclass(outer, K8sModel) and key in _aliases(outer):
            where = format_path(loc[:depth]) or "the document"
            return Problem(
                path,
                f"unknown field of {owner.__name__}; Kubernetes drops it. {key!r} is a field "
                f"of {outer.__name__} at {where}: check the indentation",
                "warning",
            )
        known = "" if hint else f"; known fields: {_short_list(allowed)}"
        return Problem(
            path,
            f"unknown field of {owner.__name__} (Kubernetes would silently drop it){hint}{known}",
        )
    known = "" if hint else f"; known fields: {_short_list(allowed)}"
    return Problem(path, f"unknown field of {owner.__name__}{hint}{known}")


def _short_list(names: Sequence[str], limit: int = 12) -> str:
    names = sorted(names)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _drop(data: Any, loc: Sequence[int | str]) -> None:
    for part in loc[:-1]:
        data = data[part]
    del data[loc[-1]]


# ------------------------------------------------------------------ entry points


def check(document: Any) -> tuple[AnyResource | None, list[Problem]]:
    """Validate one parsed document: the model (``None`` on error) and every problem found."""
    if not isinstance(document, Mapping):
        return None, [
            Problem("", f"expected a Kubernetes object (a mapping), got {_describe(document)}")
        ]
    api_version = document.get("apiVersion")
    kind = document.get("kind")
    if kind not in MODELS:
        known = ", ".join(c.KINDS)
        return None, [Problem("kind", f"unknown kind {kind!r} (the Dask kinds are {known})")]
    if api_version != c.API_VERSION:
        return None, [
            Problem(
                "apiVersion",
                f"unknown apiVersion {api_version!r} for {kind}; expected {c.API_VERSION!r}",
            )
        ]
    model = MODELS[kind]
    data: dict[str, Any] = _copy(document)
    warnings: list[Problem] = []
    for _ in range(20):  # a document with warnings is validated again without the dropped fields
        try:
            resource = model.model_validate(data)
        except ValidationError as exc:
            problems = [_problem(model, e) for e in exc.errors(include_url=False)]
            if any(p.severity == "error" for p in problems):
                return None, warnings + [p for p in problems if p.severity == "error"] + [
                    p for p in problems if p.severity == "warning"
                ]
            for err, p in zip(exc.errors(include_url=False), problems, strict=True):
                warnings.append(p)
                _drop(data, err["loc"])
            continue
        return resource, warnings
    return None, warnings  # pragma: no cover - more than 20 rounds of warnings


def validate(document: Any) -> list[Problem]:
    """Every problem with one parsed document (empty when it is a valid Dask resource)."""
    return check(document)[1]


def parse(document: Any) -> AnyResource:
    """The model of a valid Dask resource; raises :class:`InvalidResource` otherwise."""
    resource, problems = check(document)
    if resource is None:
        raise InvalidResource(problems)
    return resource


def is_dask_document(document: Any) -> bool:
    """Whether a document claims to be a Dask resource (its apiVersion is in our group)."""
    if not isinstance(document, Mapping):
        return False
    api_version = str(document.get("apiVersion", ""))
    return api_version.split("/", 1)[0] == c.GROUP or document.get("kind") in c.KINDS


def validate_stream(text: str) -> Iterator[DocumentResult]:
    """Validate every document of a multi-document YAML text; non-Dask documents are skipped."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        yield DocumentResult(
            0, None, None, [Problem("", f"not valid YAML: {exc}".replace("\n", " "))]
        )
        return
    for index, document in enumerate(documents):
        if document is None:
            continue
        kind = document.get("kind") if isinstance(document, Mapping) else None
        metadata = document.get("metadata") if isinstance(document, Mapping) else None
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        if not is_dask_document(document):
            what = f"{document.get('apiVersion')}/{kind}" if isinstance(document, Mapping) else "?"
            yield DocumentResult(index, kind, name, skipped=f"not a Dask resource ({what})")
            continue
        resource, problems = check(document)
        yield DocumentResult(index, kind, name, problems, resource=resource)


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
