"""From a validated read operation to a plan: the spec tree and this request's parameters.

Fields are collected as graphql-core collects them (fragments, type conditions, ``@skip`` and
``@include`` with their variables), and arguments converted as strawberry converts them for
resolvers, then checked by the same use cases (page sizes, cursors, sorts, depth). Whatever
would make a resolver answer an error, and every field without a projection here, raises
``Cannot``: the resolvers then answer the whole operation, so both paths answer alike.
"""

from __future__ import annotations

from itertools import count
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from graphql.language import FragmentDefinitionNode, VariableNode
from strawberry.types.arguments import convert_arguments

from cmdb.compiler.models import (
    ITEM_SCALARS,
    OBJECT_FIELDS,
    ORG_FIELDS,
    ORG_LISTS,
    ORG_UNIT_TYPES,
    RELATION_SCALARS,
    Cannot,
    ConnectionSpec,
    FieldSpec,
    ItemSpec,
    LookupSpec,
    ObjectSpec,
    OrgListSpec,
    Plan,
    RelationSpec,
    RootSpec,
)
from cmdb.core.cypher import list_parts, sort_spec
from cmdb.core.models import DomainError
from cmdb.core.pagination import check_page_size, page_request
from cmdb.identity.access import allowed
from cmdb.items.models import RelationType
from cmdb.resolvers.query import ci_filter, service_filter
from cmdb.schema.context import Context
from cmdb.schema.inputs import ItemOrder

CI, SERVICE = "ConfigurationItem", "Service"
# Root field -> (label matched, concrete types it may answer).
LOOKUPS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "node": (None, (CI, SERVICE)),
    "configurationItem": ("CI", (CI,)),
    "service": ("Service", (SERVICE,)),
}
CONNECTIONS: dict[str, tuple[str, str]] = {  # root field -> (label, node type)
    "configurationItems": ("CI", CI),
    "services": ("Service", SERVICE),
}


class Planner:
    """Plans one operation for one caller; ``plan`` raises ``Cannot`` when it may not."""

    def __init__(self, schema: strawberry.Schema, document: DocumentNode,
                 operation: OperationDefinitionNode, variables: dict[str, Any] | None,
                 context: Context) -> None:
        self.schema = schema
        self.gql: GraphQLSchema = schema._schema
        self.operation = operation
        self.context = context
        self.fragments = {
            d.name.value: FragmentDetails(d) for d in document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        coerced = get_variable_values(self.gql, operation.variable_definitions or (),
                                      variables or {})
        if isinstance(coerced, list):  # variable errors: the resolver path reports them
            raise Cannot("variables")
        self.variables: VariableValues = coerced
        self.params: dict[str, Any] = {}
        self.pages: dict[str, Any] = {}
        self.names = count()
        self.bindings: dict[str, list[str]] = {}

    # --- helpers ---------------------------------------------------------------------------

    def _param(self, value: Any) -> str:
        name = f"p{next(self.names)}"
        self.params[name] = value
        return name

    def _object_type(self, name: str) -> GraphQLObjectType:
        t = self.gql.get_type(name)
        assert isinstance(t, GraphQLObjectType)
        return t

    def _sub(self, details: list[FieldDetails], type_name: str) -> dict[str, list[FieldDetails]]:
        collected = collect_subfields(self.gql, self.fragments, self.variables, self.operation,
                                      self._object_type(type_name), details)
        if collected.new_defer_usages:
            raise Cannot("@defer")
        return collected.grouped_field_set

    def _args(self, details: list[FieldDetails], type_name: str) -> dict[str, Any]:
        name = details[0].node.name.value
        gql_field = self._object_type(type_name).fields[name]
        raw = get_argument_values(gql_field, details[0].node, self.variables)
        field = self.schema.get_field_for_type(name, type_name)
        if field is None:
            raise Cannot(name)
        return convert_arguments(raw, field.arguments,
                                 scalar_registry=self.schema.schema_converter.scalar_registry,
                                 config=self.schema.config)

    def _object(self, details: list[FieldDetails], type_name: str,
                allowed_names: set[str] | frozenset[str]) -> ObjectSpec:
        fields = []
        for key, sub in self._sub(details, type_name).items():
            name = sub[0].node.name.value
            if name not in allowed_names and name != "__typename":
                raise Cannot(f"{type_name}.{name}")
            fields.append(FieldSpec(key, name))
        return ObjectSpec(type_name, tuple(fields))

    def _org(self, details: list[FieldDetails], type_name: str) -> ObjectSpec:
        """An owner group, cost centre or location, with its parents as far as selected."""
        fields = []
        for key, sub in self._sub(details, type_name).items():
            name = sub[0].node.name.value
            if name not in ORG_FIELDS and name != "__typename":
                raise Cannot(f"{type_name}.{name}")
            fields.append(FieldSpec(key, name, self._org(sub, type_name) if name == "parent"
                                    else None))
        return ObjectSpec(type_name, tuple(fields))

    def org_list(self, name: str, details: list[FieldDetails]) -> OrgListSpec:
        a = self._args(details, "Query")
        settings = self.context.services.settings
        limit = a.get("first")
        limit = check_page_size(limit if limit is not None else settings.default_page_size,
                                settings.max_page_size)
        contains = a.get("name_contains")
        return OrgListSpec(ORG_LISTS[name], self._param(contains.lower() if contains else None),
                           self._param(limit), self._org(details, ORG_LISTS[name]))

    # --- items -----------------------------------------------------------------------------

    def item(self, details: list[FieldDetails], types: tuple[str, ...]) -> ItemSpec:
        return ItemSpec(self._item_fields(details, CI) if CI in types else None,
                        self._item_fields(details, SERVICE) if SERVICE in types else None)

    def _item_fields(self, details: list[FieldDetails], type_name: str
                     ) -> tuple[FieldSpec, ...]:
        out = []
        for key, sub in self._sub(details, type_name).items():
            name = sub[0].node.name.value
            if name in ITEM_SCALARS:
                out.append(FieldSpec(key, name))
            elif name in OBJECT_FIELDS:
                child = self._object_type(type_name).fields[name].type
                out.append(FieldSpec(key, name, self._object(
                    sub, _named(child), OBJECT_FIELDS[name])))
            elif name in ORG_UNIT_TYPES:
                out.append(FieldSpec(key, name, self._org(sub, ORG_UNIT_TYPES[name])))
            elif name == "relationships":
                out.append(FieldSpec(key, name, self.relations(sub, type_name)))
            else:
                raise Cannot(f"{type_name}.{name}")
        return tuple(out)

    def relations(self, details: list[FieldDetails], type_name: str) -> RelationSpec:
        a = self._args(details, type_name)
        rq = self.context.services.relations.relation_query(
            a["direction"], a.get("types"), a["depth"], a.get("first"), a["include_retired"])
        fields: list[FieldSpec] = []
        for key, sub in self._sub(details, "Relation").items():
            name = sub[0].node.name.value
            if name == "item":
                fields.append(FieldSpec(key, name, self.item(sub, (CI, SERVICE))))
            elif name in RELATION_SCALARS:
                fields.append(FieldSpec(key, name))
            else:
                raise Cannot(f"Relation.{name}")
        types = tuple(t.value for t in (rq.types or tuple(RelationType)))
        return RelationSpec(rq.direction.value, rq.depth, types, rq.include_retired,
                            self._param(rq.first), tuple(fields))

    # --- roots -----------------------------------------------------------------------------

    def lookup(self, name: str, details: list[FieldDetails]) -> LookupSpec:
        label, types = LOOKUPS[name]
        item_id = self._args(details, "Query")["id"]
        param = self._param(str(item_id))
        given = {a.value.name.value for d in details for a in d.node.arguments or ()
                 if a.name.value == "id" and isinstance(a.value, VariableNode)}
        if len(given) == 1 and all(a.name.value != "id" or isinstance(a.value, VariableNode)
                                   for d in details for a in d.node.arguments or ()):
            self.bindings.setdefault(given.pop(), []).append(param)
        return LookupSpec(label, param, self.item(details, types))

    def connection(self, key: str, name: str, details: list[FieldDetails]) -> ConnectionSpec:
        label, node_type = CONNECTIONS[name]
        a = self._args(details, "Query")
        services = self.context.services
        visible = self.context.visible
        if name == "services":
            f = service_filter(a.get("filter"), visible)
            use_cases: Any = services.service_records
        else:
            f = ci_filter(a.get("filter"), visible)
            use_cases = services.inventory
        order = a.get("order_by") or ItemOrder()
        use_cases.check_sort(order.field.value)
        settings = services.settings
        page = page_request(a.get("first"), a.get("after"), a.get("last"), a.get("before"),
                            settings.default_page_size, settings.max_page_size)
        parts, params = list_parts(label, f, sort_spec(order.field.value, order.direction),
                                   page)
        prefix = f"c{next(self.names)}_"
        for k, v in params.items():
            self.params[k if k.startswith("scope_") else prefix + k] = v
        self.pages[key] = page
        conn_type = f"{node_type}Connection"
        fields: list[FieldSpec] = []
        item: ItemSpec | None = None
        want_cursor = False
        for k, sub in self._sub(details, conn_type).items():
            fname = sub[0].node.name.value
            if fname == "edges":
                edge_fields = []
                for ek, esub in self._sub(sub, f"{node_type}Edge").items():
                    ename = esub[0].node.name.value
                    if ename == "node":
                        if item is not None:
                            raise Cannot("two node selections")
                        item = self.item(esub, (node_type,))
                    want_cursor |= ename == "cursor"
                    edge_fields.append(FieldSpec(ek, ename))
                fields.append(FieldSpec(k, fname, ObjectSpec(f"{node_type}Edge",
                                                             tuple(edge_fields))))
            elif fname == "pageInfo":
                spec = self._object(sub, "PageInfo", {"hasNextPage", "hasPreviousPage",
                                                      "startCursor", "endCursor"})
                want_cursor |= any(g.name in ("startCursor", "endCursor") for g in spec.fields)
                fields.append(FieldSpec(k, fname, spec))
            else:  # totalCount, __typename
                fields.append(FieldSpec(k, fname))
        want_total = any(f.name == "totalCount" for f in fields)
        return ConnectionSpec(conn_type, label, prefix, tuple(parts.where),
                              tuple(parts.page_where), parts.order, parts.sort_prop,
                              want_total, want_cursor, tuple(fields), item)

    def plan(self) -> Plan:
        if self.operation.operation is not OperationType.QUERY:
            raise Cannot("not a query")
        collected = collect_fields(self.gql, self.fragments, self.variables,
                                   self._object_type("Query"), self.operation)
        if collected.new_defer_usages:
            raise Cannot("@defer")
        roots = []
        principal = self.context.principal
        for key, details in collected.grouped_field_set.items():
            name = details[0].node.name.value
            if name == "__typename":
                roots.append(RootSpec(key, "Query"))
                continue
            if name not in LOOKUPS and name not in CONNECTIONS and name not in ORG_LISTS:
                raise Cannot(name)
            if not allowed("Query", name, principal):
                raise Cannot("refused")  # the guard answers with its error
            if name in LOOKUPS:
                roots.append(RootSpec(key, self.lookup(name, details)))
            elif name in CONNECTIONS:
                roots.append(RootSpec(key, self.connection(key, name, details)))
            else:
                roots.append(RootSpec(key, self.org_list(name, details)))
        if not self.context.visible.everything:
            self.params.update(self.context.visible.params())
        return Plan(tuple(roots), self.params, self.pages, self.bindings)


def _named(t: Any) -> str:
    while hasattr(t, "of_type"):
        t = t.of_type
    return str(t.name)


def plan_operation(schema: strawberry.Schema, document: DocumentNode,
                   operation: OperationDefinitionNode, variables: dict[str, Any] | None,
                   context: Context) -> Plan:
    try:
        return Planner(schema, document, operation, variables, context).plan()
    except DomainError as e:  # a resolver would answer this error
        raise Cannot(str(e)) from None
