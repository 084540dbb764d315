"""Domain errors as payload errors, in one place: a mutation resolver holds only its happy
path, and a ``DomainError`` it raises reaches the client in the payload's ``errors`` (field,
message, code) instead of as a GraphQL error."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import strawberry
from strawberry import Info

from cmdb.core.models import DomainError
from cmdb.schema.context import Context
from cmdb.schema.payloads import user_errors
from cmdb.schema.types import ConfigurationItem

P = ParamSpec("P")
R = TypeVar("R")


def errors_in(
    payload: Callable[..., R],
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate a resolver returning ``payload`` (put it under ``@strawberry.mutation``):
    ``DomainError`` becomes ``payload(errors=...)``; any other exception propagates."""

    def decorate(resolver: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(resolver)  # strawberry reads the arguments through __wrapped__
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await resolver(*args, **kwargs)
            except DomainError as e:
                return payload(errors=user_errors(e))

        return run

    return decorate


async def current_ci(info: Info[Context, None], ci_id: strawberry.ID) -> ConfigurationItem | None:
    """The CI as it is now, for a payload reporting a change to something it holds."""
    ci = await info.context.services.inventory.get(str(ci_id))
    return ConfigurationItem.from_model(ci) if ci else None
