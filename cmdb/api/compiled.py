"""The read compiler in the request: after parsing, validation and the document limits, a
query the compiler can answer is answered by one statement and no resolver runs; any other
operation executes as usual."""

from __future__ import annotations

from collections.abc import AsyncIterator

from graphql import ExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from cmdb.compiler.cache import PlanCache
from cmdb.compiler.service import answer
from cmdb.schema.context import Context


class CompiledReads(SchemaExtension):
    """Made per request; ``plans`` is the schema's (plans depend on its settings)."""

    def __init__(self, plans: PlanCache) -> None:
        super().__init__()
        self.plans = plans

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        context = ctx.context
        if (isinstance(context, Context) and ctx.graphql_document is not None and ctx.query
                and not ctx.pre_execution_errors
                and ctx.operation_type is OperationType.QUERY):
            data = await answer(self.plans, ctx.schema, ctx.query, ctx.graphql_document,
                                ctx.operation_name, ctx.variables, context)
            if data is not None:
                ctx.result = ExecutionResult(data=data, errors=None)
                context.compiled_read = True
        yield
