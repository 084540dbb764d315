"""Answers a read operation with one statement when it can (``None`` when it cannot: the
resolvers answer it then, so a caller sees the same answer either way)."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import DocumentNode
from graphql.utilities import get_operation_ast

from cmdb.compiler import repository
from cmdb.compiler.cache import PlanCache, scope_shape
from cmdb.compiler.models import Cannot
from cmdb.compiler.plan import plan_operation
from cmdb.compiler.shape import shape
from cmdb.db.availability import is_unavailable
from cmdb.schema.context import Context

log = logging.getLogger("cmdb.compiler")


async def answer(plans: PlanCache, schema: strawberry.Schema, query: str,
                 document: DocumentNode, operation_name: str | None,
                 variables: dict[str, Any] | None, context: Context) -> dict[str, Any] | None:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return None
    try:  # any surprise in planning leaves the operation to the resolvers
        plan = plans.plan(query, document, operation, variables, context, lambda: plan_operation(
            schema, document, operation, variables, context))
    except Cannot as e:
        log.debug("answered by resolvers: %s", e)
        return None
    except Exception:
        log.warning("could not plan a read; answered by resolvers", exc_info=True)
        return None
    db = context.services.db
    try:
        if db.tracer is None:
            values = await repository.run(db, plan.roots, scope_shape(context.visible),
                                          plan.params)
        else:  # one span for the operation's statement, in place of resolver spans
            with db.tracer.start_as_current_span(
                    "GraphQL compiled read",
                    attributes={"graphql.compiled.fields": [r.key for r in plan.roots]}):
                values = await repository.run(db, plan.roots, scope_shape(context.visible),
                                              plan.params)
        return shape(plan, values)
    except Exception as e:  # the resolvers answer instead, with their own errors
        if not is_unavailable(e):
            log.warning("compiled read failed; answered by resolvers", exc_info=True)
        return None
