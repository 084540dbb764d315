"""pydantic validation errors as field errors a front end can show."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from cmdb.core.models import DomainError, FieldError

M = TypeVar("M", bound=BaseModel)


def field_path(loc: tuple[int | str, ...], prefix: str) -> str:
    parts = [prefix] if prefix else []
    for p in loc:
        parts.append(f"[{p}]" if isinstance(p, int) else to_camel(str(p)))
    return ".".join(parts).replace(".[", "[")


def validate(model: type[M], data: dict[str, Any], prefix: str = "input") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise DomainError([
            FieldError(field=field_path(err["loc"], prefix), message=_message(err))
            for err in e.errors(include_url=False)
        ]) from None


def _message(err: Any) -> str:
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
