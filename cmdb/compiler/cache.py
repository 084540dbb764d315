"""Plans kept per document, operation, caller's grants and the variables that shape them.

A front end sends the same documents again and again with other ids: a variable that only
names the item of a lookup (``configurationItem(id: $id)``) is left out of the key and bound
anew on each request, so those requests share one plan and one cached statement. Any other
variable is part of the key by value (it may change the plan: filters, page sizes, skip and
include). Verdicts that an operation cannot be compiled are kept too.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from graphql import DocumentNode, OperationDefinitionNode, VariableNode
from graphql.language import VariableDefinitionNode, Visitor, visit

from cmdb.compiler.models import Cannot, Plan
from cmdb.identity.scope import Visibility
from cmdb.schema.context import Context

DocKey = tuple[str, str | None]


def variable_uses(document: DocumentNode) -> Counter[str]:
    """How often each variable is used (its definition not counted)."""
    uses: Counter[str] = Counter()

    class Uses(Visitor):
        def enter_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> Any:
            return self.SKIP

        def enter_variable(self, node: VariableNode, *_: Any) -> None:
            uses[node.name.value] += 1

    visit(document, Uses())
    return uses


def scope_shape(visible: Visibility) -> Visibility:
    """The grants of a scope without whose they are: its predicate's text depends on them
    alone, so plans and statements are shared by every caller of the same grants."""
    return Visibility(
        everything=visible.everything,
        service_kinds=frozenset({"*"}) if visible.service_kinds else frozenset(),
        owned_models_of="" if visible.owned_models_of is not None else None,
        own_items_of="" if visible.own_items_of is not None else None,
    )


class PlanCache:
    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self.bindable: OrderedDict[DocKey, frozenset[str]] = OrderedDict()
        self.plans: OrderedDict[tuple[Any, ...], Plan | None] = OrderedDict()

    def _key(self, doc: DocKey, bindable: frozenset[str], variables: dict[str, Any],
             context: Context) -> tuple[Any, ...]:
        roles = context.principal.roles if context.principal is not None else None
        shaped = tuple(sorted((k, json.dumps(v, sort_keys=True, default=str))
                              for k, v in variables.items() if k not in bindable))
        nulls = tuple(sorted((k, variables.get(k) is None) for k in bindable))
        return (doc, scope_shape(context.visible), roles, shaped, nulls)

    def plan(self, query: str, document: DocumentNode, operation: OperationDefinitionNode,
             variables: dict[str, Any] | None, context: Context,
             make: Callable[[], Plan]) -> Plan:
        """This request's plan: from the cache, or made by ``make`` (which may raise
        ``Cannot``, remembered as well)."""
        variables = variables or {}
        doc = (query, operation.name.value if operation.name else None)
        bindable = self.bindable.get(doc)
        usable = bindable is not None and all(
            isinstance(variables.get(k), str | int) and not isinstance(variables.get(k), bool)
            for k in bindable)
        key = self._key(doc, bindable, variables, context) if bindable is not None else None
        if usable and key is not None and key in self.plans:
            self.plans.move_to_end(key)
            cached = self.plans[key]
            if cached is None:
                raise Cannot("remembered")
            return self._bound(cached, variables, context)
        try:
            plan = make()
        except Cannot:
            if key is not None and usable:
                self._put(key, None)
            raise
        if bindable is None:
            uses = variable_uses(document)
            bindable = frozenset(v for v, params in plan.bindings.items()
                                 if uses[v] == len(params))
            self.bindable[doc] = bindable
            if len(self.bindable) > self.size:
                self.bindable.popitem(last=False)
            key = self._key(doc, bindable, variables, context)
            usable = True
        if usable and key is not None:
            self._put(key, Plan(plan.roots, {k: v for k, v in plan.params.items()
                                             if not k.startswith("scope_")},
                                plan.pages, {v: p for v, p in plan.bindings.items()
                                             if v in bindable}))
        return plan

    def _put(self, key: tuple[Any, ...], plan: Plan | None) -> None:
        self.plans[key] = plan
        if len(self.plans) > self.size:
            self.plans.popitem(last=False)

    @staticmethod
    def _bound(cached: Plan, variables: dict[str, Any], context: Context) -> Plan:
        params = dict(cached.params)
        for var, names in cached.bindings.items():
            for name in names:
                params[name] = str(variables[var])
        if not context.visible.everything:
            params.update(context.visible.params())
        return Plan(cached.roots, params, cached.pages, cached.bindings)
