"""Answers a read operation with one statement when it can (``None`` when it cannot: the
resolvers answer it then, so a caller sees the same answer either way)."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import DocumentNode
from graphql.utilities import get_operation_ast

from cmdb.compiler import repository
from cmdb.compiler.models import Cannot
from cmdb.compiler.plan import plan_operation
from cmdb.compiler.shape import shape
from cmdb.db.availability import is_unavailable
from cmdb.identity.scope import Visibility
from cmdb.schema.context import Context

log = logging.getLogger("cmdb.compiler")


def scope_shape(visible: Visibility) -> Visibility:
    """The grants of a scope without whose they are: its predicate's text depends on them
    alone, so compiled statements are cached per shape, not per user."""
    return Visibility(
        everything=visible.everything,
        service_kinds=frozenset({"*"}) if visible.service_kinds else frozenset(),
        owned_models_of="" if visible.owned_models_of is not None else None,
        own_items_of="" if visible.own_items_of is not None else None,
    )


async def answer(schema: strawberry.Schema, document: DocumentNode,
                 operation_name: str | None, variables: dict[str, Any] | None,
                 context: Context) -> dict[str, Any] | None:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return None
    try:
        plan = plan_operation(schema, document, operation, variables, context)
    except Cannot:
        return None
    try:
        data = await repository.run(context.services.db, plan.roots,
                                    scope_shape(context.visible), plan.params)
        return shape(plan, data)
    except Exception as e:  # the resolvers answer instead, with their own errors
        if not is_unavailable(e):
            log.warning("compiled read failed; answered by resolvers", exc_info=True)
        return None
