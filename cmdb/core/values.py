"""Checks on free-form attribute values: Neo4j properties hold scalars or lists of one type."""

from __future__ import annotations

from typing import Any

from cmdb.core.cypher import ATTRIBUTE_PREFIX, check_attribute_key
from cmdb.core.models import DomainError, FieldError

_SCALARS = (str, int, float, bool)
MAX_ATTRIBUTES = 100


def attribute_properties(attributes: dict[str, Any], field: str = "attributes") -> dict[str, Any]:
    """Validate attributes and return them as node properties (null removes one)."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):  # JSON input may be any value
        raise DomainError.single(field, f"{field} must be a JSON object")
    errors: list[FieldError] = []
    if len(attributes) > MAX_ATTRIBUTES:
        raise DomainError.single(field, f"at most {MAX_ATTRIBUTES} attributes")
    props: dict[str, Any] = {}
    for key, value in attributes.items():
        try:
            check_attribute_key(key, f"{field}.{key}")
        except DomainError as e:
            errors.extend(e.errors)
            continue
        if value is None or isinstance(value, _SCALARS) or (
            isinstance(value, list)
            and value
            and all(isinstance(v, _SCALARS) for v in value)
            and len({type(v) for v in value}) == 1
        ):
            props[ATTRIBUTE_PREFIX + key] = value
        else:
            errors.append(FieldError(
                field=f"{field}.{key}",
                message="an attribute value must be a string, number, boolean, "
                "or a non-empty list of one of those types",
            ))
    if errors:
        raise DomainError(errors)
    return props
