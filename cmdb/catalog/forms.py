"""Order forms: JSON Schemas (draft 2020-12) checked when an item is saved, and order input
validated against them on the server, each problem named by its form field."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from cmdb.catalog.models import BUILTINS, PLACEHOLDER
from cmdb.core.models import DomainError, FieldError

MAX_FORM_FIELDS = 100


def check_form_schema(schema: dict[str, Any], field: str = "input.formSchema") -> None:
    """The schema must be a valid JSON Schema describing an object of named fields."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        where = ".".join(str(p) for p in e.absolute_path)
        raise DomainError.single(f"{field}.{where}" if where else field,
                                 f"not a valid JSON Schema: {e.message}") from None
    if schema.get("type") != "object":
        raise DomainError.single(f"{field}.type", 'a form schema must have "type": "object"')
    props = schema.get("properties", {})
    if not isinstance(props, dict) or len(props) > MAX_FORM_FIELDS:
        raise DomainError.single(f"{field}.properties",
                                 f"properties must be an object of at most {MAX_FORM_FIELDS}")


def form_fields(schema: dict[str, Any]) -> set[str]:
    props = schema.get("properties", {})
    return set(props) if isinstance(props, dict) else set()


def _field_of(error: ValidationError, prefix: str) -> list[str]:
    """The form fields an error is about (a required one that is missing is named too)."""
    path = ".".join(str(p) for p in error.absolute_path)
    base = f"{prefix}.{path}" if path else prefix
    if error.validator == "required" and isinstance(error.instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [r for r in required if r not in error.instance]
        return [f"{base}.{m}" for m in missing] or [base]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        return [f"{base}.{k}" for k in extra] or [base]
    return [base]


def validate_form(schema: dict[str, Any], form: dict[str, Any],
                  prefix: str = "input.form") -> None:
    """Raise ``DomainError`` with one error per bad field (``input.form.<field>``)."""
    validator = Draft202012Validator(schema)
    errors: list[FieldError] = []
    for e in sorted(validator.iter_errors(form), key=lambda e: list(map(str, e.path))):
        for f in _field_of(e, prefix):
            errors.append(FieldError(field=f, message=e.message))
    if errors:
        raise DomainError(errors)


def with_defaults(schema: dict[str, Any], form: dict[str, Any]) -> dict[str, Any]:
    """The form with the schema's top-level defaults for fields not given."""
    out = dict(form)
    for name, spec in schema.get("properties", {}).items():
        if name not in out and isinstance(spec, dict) and "default" in spec:
            out[name] = spec["default"]
    return out


def render(template: str, values: dict[str, Any]) -> str:
    """``{name}`` replaced by ``values[name]``; every name was checked when the item was
    saved, so a missing one (an optional field left empty) becomes the empty string."""
    return PLACEHOLDER.sub(lambda m: _text(values.get(m.group(1))), template)


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def unknown_placeholders(used: set[str], schema: dict[str, Any]) -> list[str]:
    return sorted(used - form_fields(schema) - set(BUILTINS))
