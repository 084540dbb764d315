"""pydantic validation errors as field errors a front end can show."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError
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


def stripped_non_blank(message: str) -> AfterValidator:
    """A validator that strips surrounding space and refuses what is left empty."""

    def check(value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError(message)
        return value

    return AfterValidator(check)


# Text fields that may not be blank: stripped, and refused when nothing is left.
NonBlank = Annotated[str, stripped_non_blank("must not be blank")]
NonBlankName = Annotated[str, stripped_non_blank("name must not be blank")]
