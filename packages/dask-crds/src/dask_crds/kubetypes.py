"""Scalar types and the base class shared by the generated Kubernetes models.

The generated module :mod:`dask_crds.k8s` builds on these. Kubernetes serialises a few types
specially; the models accept what ``kubectl`` accepts and write what the API server stores:

* :data:`IntOrString` (``targetPort``, probe ``port``): an integer or a string, never a bool.
* :data:`Quantity` (``resources.limits.cpu``): an integer, a quantity string such as ``"32Gi"``,
  or a float, which is written back as a string (``0.5`` -> ``"0.5"``) because a custom
  resource schema can only say integer-or-string.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

#: The grammar of a Kubernetes resource quantity (k8s.io/apimachinery/pkg/api/resource).
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)


def _int_or_string(value: Any) -> int | str:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise PydanticCustomError(
        "int_or_string",
        "expected an integer or a string (int-or-string), got {got}",
        {"got": type(value).__name__},
    )


def _quantity(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("quantity", "a quantity must be a finite number")
        return repr(value) if not value.is_integer() else str(int(value))
    if isinstance(value, str):
        if _QUANTITY.match(value):
            return value
        raise PydanticCustomError(
            "quantity",
            "{value} is not a Kubernetes quantity (examples: 2, '500m', '32Gi', '1.5')",
            {"value": repr(value)},
        )
    raise PydanticCustomError(
        "quantity",
        "expected a quantity (a number or a string such as '32Gi'), got {got}",
        {"got": type(value).__name__},
    )


def unique_by(key: str) -> AfterValidator:
    """A list validator: no two items have the same ``key`` (as for a Pod's container names).

    Goes with ``x-kubernetes-list-type: map`` in the schema, which makes the API server check the
    same and merge such lists item by item under server-side apply.
    """

    def check(items: list[Any]) -> list[Any]:
        seen: dict[Any, int] = {}
        for index, item in enumerate(items):
            value = getattr(item, key, None)
            if value in seen:
                raise PydanticCustomError(
                    "duplicate_key",
                    "items [{first}] and [{index}] have the same {key} {value}: it must be unique",
                    {"first": seen[value], "index": index, "key": key, "value": repr(value)},
                )
            seen[value] = index
        return items

    return AfterValidator(check)


IntOrString = Annotated[
    int | str,
    PlainValidator(_int_or_string),
    WithJsonSchema(
        {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    ),
]

Quantity = Annotated[
    int | str,
    PlainValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
        }
    ),
]

#: An RFC 3339 timestamp as the API server writes it (``2024-01-02T03:04:05Z``).
Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
MicroTime = Time

#: ``managedFields[].fieldsV1``: an opaque trie written by the API server (``type: object`` in
#: the Kubernetes OpenAPI document too). Only meaningful in the top-level metadata.
FieldsV1 = Annotated[dict[str, Any], WithJsonSchema({"type": "object"})]


class K8sModel(BaseModel):
    """Base of every generated Kubernetes model: camelCase on the wire, no unknown fields.

    The API server silently drops fields its schema does not know; these models reject them so
    that a typo such as ``resources: {limit: ...}`` is reported instead of ignored.
    """

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        strict=False,
        validate_default=False,
    )
