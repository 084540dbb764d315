"""Limits on GraphQL documents, checked before anything is executed.

Two passes, both cached per document text by the schema extension (``cmdb.api.schema``):

* :func:`shape_errors` looks at the document alone (no schema): depth, aliases and
  directives per operation, fragments counted each time they are spread, no directive
  repeated on one location, and no field selected more than a few times in one selection
  set (graphql-core's check that repeated fields can be merged is quadratic in the repeats:
  500 copies of one field took 1.7 s to validate). A document over a limit gets one error
  naming it and is not looked at further, so an abusive document costs one walk over its
  text. Fragments are measured once each (memoised), so a "fragment bomb" (fragments
  spreading others several times) costs linear time here, where counting by expansion would
  be exponential.
* :func:`compile_cost` runs next, still before validation (it tolerates unknown names), and
  turns the chosen operation into a small arithmetic plan: the cost is one unit per field,
  each multiplied by the page sizes of the lists it sits in (``first``/``last`` when given,
  else the field's default or the default page size; lists without paging count as
  ``UNPAGED_LIST_ESTIMATE``). Page sizes given as variables stay
  symbolic in the plan, so a request only evaluates the plan with its variables
  (:meth:`CostPlan.check`). Literal ``first``/``last`` values outside 0..largest page are
  refused at compile time, variables at evaluation.

Introspection fields (``__schema``, ``__type``, ``__typename``) cost nothing and do not count
for depth: they are answered from memory (and refused outside development).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_composite_type,
    is_interface_type,
    is_list_type,
    is_object_type,
)
from graphql.utilities import get_operation_ast

PAGE_ARGUMENTS = ("first", "last")
# The size assumed for a list that takes no first/last (a role's members, a user's desktops,
# an order's approval steps): such lists are short by nature, so the page size would
# overstate them; a cost of 10 each keeps nested ones counted.
UNPAGED_LIST_ESTIMATE = 10


@dataclass(frozen=True)
class Limits:
    max_depth: int
    max_aliases: int
    max_directives: int
    max_field_repeats: int
    max_cost: int
    default_page_size: int
    max_page_size: int
    # "Type.field" -> largest page that field allows when it is not max_page_size.
    page_size_overrides: Mapping[str, int]

    def largest_page(self, type_name: str, field_name: str) -> int:
        return self.page_size_overrides.get(f"{type_name}.{field_name}", self.max_page_size)


def _error(message: str, code: str, nodes: Node | list[Node] | None = None,
           **extensions: Any) -> GraphQLError:
    return GraphQLError(message, nodes, extensions={"code": code, **extensions})


# --- pass 1: shape --------------------------------------------------------------------------

# Raw nesting (introspection included) beyond which a document is refused outright; it keeps
# the walk's recursion bounded whatever the depth limit is.
_MAX_NESTING = 64


class _TooDeep(Exception):
    pass


@dataclass
class _Shape:
    depth: int = 0
    aliases: int = 0
    directives: int = 0
    # Response names at this level (through inline fragments and spreads), with repeats.
    names: Counter[str] = field(default_factory=Counter)


class _ShapeWalker:
    def __init__(self, document: DocumentNode, max_field_repeats: int) -> None:
        self.fragments = {d.name.value: d for d in document.definitions
                          if isinstance(d, FragmentDefinitionNode)}
        self.max_field_repeats = max_field_repeats
        self.memo: dict[str, _Shape] = {}
        self.open: set[str] = set()
        self.repeated: GraphQLError | None = None
        self.repeated_field: GraphQLError | None = None

    def directives(self, node: Any) -> int:
        found = node.directives or ()
        if len(found) > 1 and self.repeated is None:
            seen: set[str] = set()
            for directive in found:
                name = directive.name.value
                if name in seen:
                    self.repeated = _error(
                        f"directive @{name} is repeated on one location; each directive may "
                        "be given once per field or fragment", "DIRECTIVE_REPEATED", directive)
                    break
                seen.add(name)
        return len(found)

    def selections(self, selection_set: SelectionSetNode, nesting: int) -> _Shape:
        if nesting > _MAX_NESTING:
            raise _TooDeep
        shape = _Shape()
        for selection in selection_set.selections:
            shape.directives += self.directives(selection)
            if isinstance(selection, FieldNode):
                shape.names[(selection.alias or selection.name).value] += 1
                if selection.alias is not None:
                    shape.aliases += 1
                if selection.selection_set is not None:
                    inner = self.selections(selection.selection_set, nesting + 1)
                    shape.aliases += inner.aliases
                    shape.directives += inner.directives
                    if not selection.name.value.startswith("__"):
                        shape.depth = max(shape.depth, inner.depth + 1)
                continue
            if isinstance(selection, InlineFragmentNode):
                inner = self.selections(selection.selection_set, nesting + 1)
            elif isinstance(selection, FragmentSpreadNode):
                inner = self.fragment(selection.name.value, nesting + 1)
            else:  # pragma: no cover - the parser makes no other selections
                continue
            shape.depth = max(shape.depth, inner.depth)
            shape.aliases += inner.aliases
            shape.directives += inner.directives
            shape.names.update(inner.names)
        if self.repeated_field is None and shape.names:
            name, count = shape.names.most_common(1)[0]
            if count > self.max_field_repeats:
                self.repeated_field = _error(
                    f"field '{name}' is selected {count} times in one selection set; the "
                    f"limit is {self.max_field_repeats} (fragments count each time they are "
                    "used)", "FIELD_REPEATED", selection_set)
        return shape

    def fragment(self, name: str, nesting: int) -> _Shape:
        found = self.memo.get(name)
        if found is not None:
            return found
        definition = self.fragments.get(name)
        if definition is None or name in self.open:  # unknown or cyclic: validation says so
            return _Shape()
        self.open.add(name)
        try:
            shape = self.selections(definition.selection_set, nesting)
        finally:
            self.open.discard(name)
        shape.directives += self.directives(definition)
        self.memo[name] = shape
        return shape


def shape_errors(document: DocumentNode, limits: Limits) -> list[GraphQLError]:
    """The first limit the document breaks (depth, aliases, directives, repeats), if any."""
    walker = _ShapeWalker(document, limits.max_field_repeats)
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        name = definition.name.value if definition.name else "anonymous"
        try:
            shape = walker.selections(definition.selection_set, 0)
        except _TooDeep:
            return [_error(f"'{name}' exceeds maximum operation depth of {limits.max_depth}",
                           "TOO_DEEP", definition)]
        shape.directives += walker.directives(definition)
        for variable in definition.variable_definitions or ():
            shape.directives += walker.directives(variable)
        if shape.depth > limits.max_depth:
            return [_error(f"'{name}' exceeds maximum operation depth of {limits.max_depth}",
                           "TOO_DEEP", definition, depth=shape.depth)]
        if shape.aliases > limits.max_aliases:
            return [_error(
                f"{shape.aliases} aliases found in '{name}'; the limit is {limits.max_aliases} "
                "(aliases in fragments count each time the fragment is used)",
                "TOO_MANY_ALIASES", definition)]
        if shape.directives > limits.max_directives:
            return [_error(
                f"{shape.directives} directives found in '{name}'; the limit is "
                f"{limits.max_directives} (directives in fragments count each time the "
                "fragment is used)", "TOO_MANY_DIRECTIVES", definition)]
        for found in (walker.repeated, walker.repeated_field):
            if found is not None:
                return [found]
    return []


# --- pass 2: cost ---------------------------------------------------------------------------

# A cost expression: const + sum(coef * value(variable, else fallback) * sub-expression).
Term = tuple[int, str, int, "Expr"]
Expr = tuple[int, tuple[Term, ...]]
# A page size still to be applied to the next list down (a connection's edges), if any:
# an int, or (variable, fallback).
Pending = int | tuple[str, int] | None

_ONE: Expr = (1, ())
_ZERO: Expr = (0, ())


def _sum(parts: list[Expr]) -> Expr:
    const = 0
    terms: list[Term] = []
    for c, t in parts:
        const += c
        terms.extend(t)
    return const, tuple(terms)


def _scale(expr: Expr, factor: Pending) -> Expr:
    if factor is None:
        return expr
    if isinstance(factor, int):
        const, terms = expr
        return const * factor, tuple((coef * factor, v, fb, sub) for coef, v, fb, sub in terms)
    variable, fallback = factor
    return 0, ((1, variable, fallback, expr),)


def _evaluate(expr: Expr, values: Mapping[str, int]) -> int:
    const, terms = expr
    total = const
    for coef, variable, fallback, sub in terms:
        total += coef * values.get(variable, fallback) * _evaluate(sub, values)
    return total


@dataclass(frozen=True)
class PageVariable:
    variable: str
    argument: str
    field: str  # "Type.field"
    largest: int


@dataclass(frozen=True)
class CostPlan:
    """What :func:`compile_cost` found: errors for literal values, else the cost expression."""

    errors: tuple[GraphQLError, ...]
    expr: Expr
    page_variables: tuple[PageVariable, ...]
    max_cost: int

    def check(self, variables: Mapping[str, Any] | None) -> list[GraphQLError]:
        """Errors for this request's variables: a page size out of range, or the cost."""
        if self.errors:
            return list(self.errors)
        values: dict[str, int] = {}
        if self.page_variables and variables:
            for page in self.page_variables:
                value = variables.get(page.variable)
                # Not an int: variable coercion refuses it before anything runs.
                if not isinstance(value, int) or isinstance(value, bool):
                    continue
                if not 0 <= value <= page.largest:
                    return [_page_error(page.argument, value, page.field, page.largest)]
                values[page.variable] = value
        cost = _evaluate(self.expr, values) if self.expr[1] else self.expr[0]
        if cost > self.max_cost:
            return [_error(
                f"query cost {cost} exceeds the limit of {self.max_cost}: each field costs 1, "
                "times the page sizes (first/last, else the default) of the lists it is "
                "in; ask for smaller pages or fewer nested lists",
                "QUERY_TOO_COSTLY", cost=cost, limit=self.max_cost)]
        return []


def _page_error(argument: str, value: int, field: str, largest: int,
                node: Node | None = None) -> GraphQLError:
    message = f"{argument} must be between 0 and {largest}; {value} was given ({field})"
    return _error(message, "INVALID", node, fields=[
        {"field": argument, "message": message, "code": "INVALID"}])


class _CostCompiler:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode,
                 operation: OperationDefinitionNode, limits: Limits) -> None:
        self.schema = schema
        self.limits = limits
        self.fragments = {d.name.value: d for d in document.definitions
                          if isinstance(d, FragmentDefinitionNode)}
        self.defaults: dict[str, int] = {}
        for variable in operation.variable_definitions or ():
            if isinstance(variable.default_value, IntValueNode):
                self.defaults[variable.variable.name.value] = int(variable.default_value.value)
        self.memo: dict[tuple[str, Pending], Expr] = {}
        self.errors: list[GraphQLError] = []
        self.page_variables: dict[tuple[str, str, str], PageVariable] = {}

    def page_size(self, field: FieldNode, type_name: str, definition: Any) -> Pending:
        """The page size a field asks for, or None when it takes no first/last."""
        given = {a.name.value: a.value for a in field.arguments or ()}
        size: Pending = None
        for argument in PAGE_ARGUMENTS:
            if argument not in definition.args:
                continue
            default = definition.args[argument].default_value
            fallback = default if isinstance(default, int) and not isinstance(default, bool) \
                else self.limits.default_page_size
            if size is None:
                size = fallback
            value = given.get(argument)
            label = f"{type_name}.{field.name.value}"
            largest = self.limits.largest_page(type_name, field.name.value)
            if isinstance(value, IntValueNode):
                number = int(value.value)
                if not 0 <= number <= largest:
                    self.errors.append(_page_error(argument, number, label, largest, value))
                size = max(number, 0)
            elif isinstance(value, VariableNode):
                name = value.name.value
                self.page_variables.setdefault(
                    (name, argument, label), PageVariable(name, argument, label, largest))
                size = (name, self.defaults.get(name, fallback))
        return size

    def selections(self, selection_set: SelectionSetNode, parent: Any,
                   pending: Pending) -> Expr:
        parts: list[Expr] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                parts.append(self.field(selection, parent, pending))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                parts.append(self.selections(selection.selection_set, inner or parent, pending))
            elif isinstance(selection, FragmentSpreadNode):
                parts.append(self.fragment(selection.name.value, pending))
        return _sum(parts)

    def fragment(self, name: str, pending: Pending) -> Expr:
        key = (name, pending)
        found = self.memo.get(key)
        if found is not None:
            return found
        definition = self.fragments.get(name)
        if definition is None:  # validation refuses unknown fragments
            return _ZERO
        self.memo[key] = _ZERO  # a cycle (refused by validation) adds nothing
        parent = self.schema.get_type(definition.type_condition.name.value)
        expr = self.selections(definition.selection_set, parent, pending)
        self.memo[key] = expr
        return expr

    def field(self, node: FieldNode, parent: Any, pending: Pending) -> Expr:
        name = node.name.value
        if name.startswith("__"):
            return _ZERO
        if not (is_object_type(parent) or is_interface_type(parent)):
            return _ONE
        definition = parent.fields.get(name)
        if definition is None:  # validation refuses unknown fields
            return _ONE
        if node.selection_set is None:
            return _ONE
        field_type = get_nullable_type(definition.type)
        named = get_named_type(definition.type)
        page = self.page_size(node, parent.name, definition)
        is_list = is_list_type(field_type)
        if page is not None and not is_list:
            # A connection: its page applies to the list inside it (edges, lines).
            multiplier, passed_down = None, page
        elif is_list and is_composite_type(named):
            if page is not None:
                multiplier = page
            elif pending is not None:
                multiplier = pending
            else:
                multiplier = UNPAGED_LIST_ESTIMATE
            passed_down = None
        else:
            multiplier, passed_down = None, None
        children = self.selections(node.selection_set, named, passed_down)
        return _sum([_ONE, _scale(children, multiplier)])


def compile_cost(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None,
                 limits: Limits) -> CostPlan:
    """The cost plan of the operation a request runs. The document has passed
    :func:`shape_errors` but may be invalid: unknown names cost one (validation refuses
    them next)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:  # strawberry refuses the request before validation
        return CostPlan((), _ZERO, (), limits.max_cost)
    root = schema.get_root_type(operation.operation)
    compiler = _CostCompiler(schema, document, operation, limits)
    expr = compiler.selections(operation.selection_set, root, None)
    return CostPlan(tuple(compiler.errors[:1]), expr, tuple(compiler.page_variables.values()),
                    limits.max_cost)


__all__ = ["CostPlan", "Limits", "compile_cost", "shape_errors"]
