"""Differential test of the read compiler: the compiled path answers exactly what the resolvers
answer.

Two schemas over one graph (``tests/compiled_world.py``, written through the API): one built
with ``read_compiler`` on (the settings' default), one with it off. Every read operation runs
through both, as every role of ``cmdb/identity/scope.py`` (and a caller with no role), each
execution with a fresh ``Context``; ``data`` and the formatted errors (message, locations,
path, extensions) must be equal. Nothing is written between the two runs.

Operations:
- every read query document found in the test suite (string literals under ``tests/`` that
  parse as GraphQL, hold only queries and validate against the schema), with variables made
  from their types and the graph's ids (``harvest_documents``);
- operations generated from the schema by hypothesis-graphql, mostly over the root fields
  the compiler targets (``TARGETED``), some over every query field, with arguments drawn
  from the graph (ids of real items, small pages, names and codes).

``context.compiled_read`` is counted on the compiled side; ``EXPECT_COMPILED_SHARE`` is the
share of generated operations over the targeted fields that must have been compiled (0 until
the compiler answers; ``-s`` prints the share).

In CI the generated count is ``CMDB_DIFF_EXAMPLES`` (default 400) with a derandomized
hypothesis profile, so runs are reproducible. The long run (at least 10,000 operations)::

    CMDB_TEST_INSTANCE=test-4 CMDB_DIFF_EXAMPLES=10000 \\
        .venv/bin/pytest -s -p no:cacheprovider tests/test_compiled_reads.py

``CMDB_DIFF_RANDOM=1`` draws new examples each run instead of the fixed sequence. A failure
prints the role, the operation and its variables, and both answers; hypothesis shrinks a
generated one first.

The clock (``cmdb.core.clock``) is pinned while operations run, so answers that depend on now
are equal on both paths as long as both take now from that clock. The same comparison over
HTTP, against two served processes (``CMDB_READ_COMPILER`` false and true), is
``tests/test_compiled_reads_served.py``.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import graphql
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes
from hypothesis_graphql import strategies as gql_st

from cmdb.api.schema import build_schema, sdl
from cmdb.core import clock
from cmdb.db.driver import Database
from cmdb.identity.principal import Principal
from cmdb.schema.context import Context
from cmdb.services import Services
from cmdb.settings import Settings
from tests.compiled_world import OWNER, REQUESTER, World, build_world
from tests.conftest import settle, wipe

pytestmark = pytest.mark.integration

# Raised by the lead once the compiler answers: the share of generated operations over the
# targeted root fields that ``context.compiled_read`` must mark as compiled.
EXPECT_COMPILED_SHARE = 0.5

TOTAL = int(os.environ.get("CMDB_DIFF_EXAMPLES", "400"))
TESTS = Path(__file__).resolve().parent
SCHEMA_SDL = sdl()
TARGETED = ["node", "configurationItem", "configurationItems", "service", "services",
            "ownerGroups", "costCentres", "locations"]
# Roles as cmdb/identity/scope.py groups them, and a caller with no role (None).
ROLES: tuple[str | None, ...] = (
    "admin", "operator", "monitoring", "executive", "finance", "finance_all",
    "catalogue_admin", "service_owner", "requester", "approver", "discovery_agent", None)
USERS = {"service_owner": OWNER, "requester": REQUESTER}
RERUNS = 8  # runs of the resolver path that may show an error answer is one it also gives
# Generated operations draw half their callers from the roles that see most of the graph (or
# a part of it no other role sees), so that answers carry items rather than nothing.
DRAWN_ROLES = st.one_of(st.sampled_from(["admin", "operator", "service_owner", "requester"]),
                        st.sampled_from(ROLES))

settings.register_profile(
    "compiled-reads", derandomize=os.environ.get("CMDB_DIFF_RANDOM") != "1", deadline=None,
    database=None, suppress_health_check=list(HealthCheck), print_blob=True)
PROFILE = settings.get_profile("compiled-reads")


def principal(role: str | None) -> Principal:
    if role is None:
        return Principal("diff-nobody", frozenset())
    return Principal(USERS.get(role, f"diff-{role}"), frozenset({role}))


# --- the two paths ---------------------------------------------------------------------------


def _longest_list(data: Any) -> int:
    """The longest list in an answer: whether it reached past one item (a coverage count)."""
    if isinstance(data, dict):
        return max((_longest_list(v) for v in data.values()), default=0)
    if isinstance(data, list):
        return max([len(data), *(_longest_list(v) for v in data)])
    return 0


def _error_kinds(errors: list[dict[str, Any]]) -> set[str]:
    """Errors with the list indices of their paths left out, as comparable text."""
    return {json.dumps({**e, "path": [p if isinstance(p, str) else "*"
                                      for p in e.get("path") or ()]}, sort_keys=True)
            for e in errors}


@dataclass(repr=False)  # hypothesis prints the arguments of a failing example: keep it short
class Diff:
    services: Services
    compiled: Any  # build_schema(settings): read_compiler on
    resolvers: Any  # read_compiler off
    world: World
    fingerprint: tuple[Any, ...] = ()  # the graph's, once the world is written
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # first error's code, by kind
    internal: list[str] = field(default_factory=list)  # operations answered "Internal error"

    def __repr__(self) -> str:
        return "Diff(<two schemas over the compiled_world graph>)"

    async def execute(self, schema: Any, query: str, variables: dict[str, Any] | None,
                      role: str | None, operation: str | None) -> tuple[Any, bool]:
        ctx = Context(self.services, "difftest", principal(role))
        result = await schema.execute(query, variable_values=variables, context_value=ctx,
                                      operation_name=operation)
        errors = [e.formatted for e in result.errors or []]
        return (result.data, errors), ctx.compiled_read

    async def compare(self, query: str, variables: dict[str, Any] | None, role: str | None,
                      operation: str | None = None, kind: str = "") -> None:
        want, off_compiled = await self.execute(self.resolvers, query, variables, role,
                                                operation)
        got, compiled = await self.execute(self.compiled, query, variables, role, operation)
        assert not off_compiled, "the schema with read_compiler off compiled a read"
        self.counts[f"{kind} operations"] += 1
        self.counts[f"{kind} compiled"] += compiled
        longest = _longest_list(want[0])
        self.counts[f"{kind} with a list of 2+"] += longest >= 2
        self.counts[f"{kind} with a full default page"] += longest >= 50
        if want[1]:
            self.counts[f"{kind} with errors"] += 1
            first = want[1][0]
            code = f"{(first.get('extensions') or {}).get('code')} {first['message'][:50]}"
            self.errors[f"{kind}: {code}"] += 1
            if any((e.get("extensions") or {}).get("code") == "INTERNAL" for e in want[1]):
                self.counts[f"{kind} INTERNAL errors"] += 1
                self.internal.append(f"role {role}, variables {variables}:\n{query}")
        if got != want and got[0] == want[0] and _error_kinds(got[1]) == _error_kinds(want[1]):
            # Items of a list failing alike null the list's parent, and graphql-core reports
            # the error of whichever item finished first: the index in the path varies.
            self.counts[f"{kind} errors alike but for list indices"] += 1
            return
        if got != want and got[0] == want[0]:
            # Sibling fields failing together null their parent, and again the first to
            # finish is reported: the resolver path itself varies there.
            for _ in range(RERUNS):
                again, _compiled = await self.execute(self.resolvers, query, variables, role,
                                                      operation)
                if again == got:
                    self.counts[f"{kind} errors that vary on the resolver path"] += 1
                    return
        if got != want:
            raise AssertionError(
                f"the compiled path answered differently\nrole: {role}\n"
                f"operation: {operation}\nvariables: {json.dumps(variables, default=str)}\n"
                f"query:\n{query}\ncompiled ({compiled}):\n"
                f"{json.dumps(got, indent=1, default=str)[:4000]}\n"
                f"resolvers:\n{json.dumps(want, indent=1, default=str)[:4000]}")

    async def compare_roles(self, query: str, variables: dict[str, Any] | None,
                            operation: str | None = None, kind: str = "") -> None:
        """``compare`` for every role, the roles side by side (the reads wait on Neo4j)."""
        await asyncio.gather(*(self.compare(query, variables, role, operation, kind)
                               for role in ROLES))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def diff(db: Database, test_settings: Settings) -> AsyncIterator[Diff]:
    await wipe(db)
    services = Services(db, test_settings)
    compiled = build_schema(test_settings)
    resolvers = build_schema(test_settings.model_copy(update={"read_compiler": False}))
    admin = principal("admin")

    async def run(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        result = await resolvers.execute(query, variable_values=variables,
                                          context_value=Context(services, "world", admin))
        assert result.errors is None and result.data is not None, (query, variables,
                                                                   result.errors)
        return result.data

    started = time.monotonic()
    world = await build_world(run)
    await settle(db)  # health rolled up, as readers see it once the worker has run
    POOL["ids"] = [*world.all_ids, "00000000-0000-4000-8000-000000000000", "nope"]
    POOL["strings"] = world.strings
    POOL["cursors"] = await cursors(run)
    POOL["items"] = sorted(world.ids.values())
    d = Diff(services, compiled, resolvers, world)
    d.fingerprint = await fingerprint(db)
    d.counts["world seconds"] = round(time.monotonic() - started)
    # Answers that depend on now (maintenance windows, durations, asset values) must not
    # change between the two runs of an operation; the compiled path takes now from the same
    # clock (a Cypher statement reading Neo4j's own clock would answer differently here).
    clock.pin(clock.utcnow())
    try:
        yield d
    finally:
        clock.pin(None)
        await services.close()
        print("\ncompiled reads:", dict(sorted(d.counts.items())))
        print("errors both paths gave (first of each answer):", dict(d.errors.most_common(20)))
        if d.internal:
            print("operations answered with an internal error (on both paths):",
                  *d.internal[:10], sep="\n  ")
        if world.failed_relations:
            print("relations the product refused:", *world.failed_relations, sep="\n  ")


CURSORS = """{ configurationItems(first: 500, filter: {includeRetired: true}) {
    edges { cursor } }
  byName: configurationItems(first: 500, orderBy: {field: NAME, direction: DESC}) {
    edges { cursor } }
  services(first: 500, filter: {includeRetired: true}) { edges { cursor } } }"""


async def cursors(run: Any) -> list[str]:
    """Real cursors (every few of them) for ``after`` and ``before``."""
    data = await run(CURSORS, {})
    found = [e["cursor"] for page in data.values() for e in page["edges"]]
    return sorted(set(found[::7]))


FINGERPRINT = """
CALL () { MATCH (n) RETURN count(n) AS nodes,
          sum(size(keys(n))) AS nodeProps }
CALL () { MATCH ()-[r]->() RETURN count(r) AS rels, sum(size(keys(r))) AS relProps }
RETURN nodes, nodeProps, rels, relProps"""


async def fingerprint(db: Database) -> tuple[Any, ...]:
    """Counts of nodes, relationships and their properties: what a write would change."""
    rows = await db.read(FINGERPRINT)
    return tuple(rows[0].values())


# --- documents of the test suite -------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    where: str  # file:line
    text: str
    operations: tuple[str | None, ...]  # operation names (None: the only, anonymous one)


_GQL_SCHEMA = build_schema(Settings())._schema
_SELF = {"test_compiled_reads.py", "test_compiled_reads_served.py", "compiled_world.py"}


def _strings(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and "{" in node.value:
            yield node.lineno, node.value


def harvest_documents() -> tuple[list[Document], Counter[str]]:
    """Read query documents written in tests/ (and what was passed over, by reason)."""
    schema = _GQL_SCHEMA
    found: dict[str, Document] = {}
    skipped: Counter[str] = Counter()
    files = sorted(p for p in TESTS.rglob("*.py") if p.name not in _SELF)
    for path in files:
        for line, text in _strings(path):
            try:
                document = graphql.parse(text)
            except graphql.GraphQLError:
                continue
            operations = [d for d in document.definitions
                          if isinstance(d, graphql.OperationDefinitionNode)]
            if not operations:
                skipped["fragments only"] += 1
                continue
            if any(o.operation != graphql.OperationType.QUERY for o in operations):
                skipped["not a query"] += 1
                continue
            if graphql.validate(schema, document):
                skipped["invalid for the schema"] += 1
                continue
            if text in found:
                skipped["duplicate"] += 1
                continue
            found[text] = Document(f"{path.relative_to(TESTS)}:{line}", text,
                                   tuple(o.name.value if o.name else None for o in operations))
    return list(found.values()), skipped


DOCUMENTS, SKIPPED = harvest_documents()


class NoValue(Exception):
    """A variable type this test cannot make a value for."""


def value_for(type_: graphql.GraphQLInputType, seed: int, world: World) -> Any:
    """A value of ``type_``, varied by ``seed``, drawn from the graph where it is an id or a
    name; input objects get their required fields only."""
    if isinstance(type_, graphql.GraphQLNonNull):
        return value_for(type_.of_type, seed, world)
    if isinstance(type_, graphql.GraphQLList):
        return [value_for(type_.of_type, seed + i, world) for i in range(1 + seed % 2)]
    if isinstance(type_, graphql.GraphQLEnumType):
        names = list(type_.values)
        return names[seed % len(names)]
    if isinstance(type_, graphql.GraphQLInputObjectType):
        return {name: value_for(f.type, seed, world) for name, f in type_.fields.items()
                if graphql.is_required_input_field(f)}
    name = getattr(type_, "name", "")
    picks: dict[str, list[Any]] = {
        "ID": [world.ids[n] for n in ("Payments", "esx-01", "srv-00", "desk-req",
                                      "Legacy Billing", "old-server", "Web Shop", "vm-pay-1")],
        "String": [OWNER, "srv", "Payments", "CC-100", "2026-10", REQUESTER],
        "Int": [3, 1, 60, 0],
        "Float": [1.5, 0.0],
        "Boolean": [True, False],
        "DateTime": ["2026-11-01T00:00:00Z", "2026-01-01T00:00:00+02:00"],
        "Date": ["2026-11-01", "2026-01-31"],
        "Decimal": ["1.50", "0"],
        "JSON": [{}, {"tier": 1}],
    }
    if name not in picks:
        raise NoValue(name)
    return picks[name][seed % len(picks[name])]


def variables_for(document: Document, operation: str | None, seed: int,
                  world: World) -> dict[str, Any]:
    parsed = graphql.parse(document.text)
    op = graphql.get_operation_ast(parsed, operation)
    assert op is not None
    out: dict[str, Any] = {}
    for definition in op.variable_definitions or ():
        type_ = graphql.type_from_ast(_GQL_SCHEMA, definition.type)
        assert type_ is not None
        required = isinstance(type_, graphql.GraphQLNonNull) and definition.default_value is None
        if required or seed % 2 == 0:  # optional ones are left out in every other run
            out[definition.variable.name.value] = value_for(type_, seed, world)  # type: ignore[arg-type]
    return out


def test_the_suite_has_read_documents_to_compare():
    print(f"\nharvested {len(DOCUMENTS)} read documents; passed over: {dict(SKIPPED)}")
    assert len(DOCUMENTS) > 50
    fields = {f for d in DOCUMENTS for f in TARGETED if f"{f}(" in d.text or f"{f} " in d.text}
    assert set(TARGETED) <= fields


SEEDS = (0, 1)


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.where for d in DOCUMENTS])
async def test_suite_documents_answer_alike(diff: Diff, document: Document) -> None:
    for operation in document.operations:
        for seed in SEEDS:
            try:
                variables = variables_for(document, operation, seed, diff.world)
            except NoValue as e:
                pytest.skip(f"no value for a variable of type {e}")
            await diff.compare_roles(document.text, variables, operation, "suite")


# --- generated operations --------------------------------------------------------------------

# Values from the graph, filled by the fixture before the first example is drawn.
POOL: dict[str, list[str]] = {"ids": ["none"], "strings": ["none"], "items": ["none"],
                              "cursors": ["none"]}


def _pool(kind: str) -> st.SearchStrategy[str]:
    return st.deferred(lambda: st.sampled_from(POOL[kind]))


def _json(value: Any) -> graphql.ValueNode:
    if isinstance(value, bool):
        return nodes.Boolean(value)
    if isinstance(value, int):
        return nodes.Int(value)
    if isinstance(value, float):
        return nodes.Float(value)
    return nodes.String(value)


SCALARS: dict[str, st.SearchStrategy[graphql.ValueNode]] = {
    "ID": st.one_of(_pool("items"), _pool("items"), _pool("ids"),
                    st.sampled_from(["", "x"])).map(nodes.String),
    "String": st.one_of(_pool("strings"), _pool("cursors"), st.text(max_size=6)
                        ).map(nodes.String),
    "Int": st.one_of(st.integers(0, 6), st.integers(0, 6), st.sampled_from([49, 50, 51, 60,
                                                                            500, 501, -1])
                     ).map(nodes.Int),
    "Float": st.floats(0, 10, allow_nan=False).map(nodes.Float),
    "Date": st.sampled_from(["2026-11-01", "2026-01-31", "bad"]).map(nodes.String),
    "DateTime": st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1),
                             timezones=st.just(UTC)).map(lambda d: d.isoformat())
                  .map(nodes.String),
    "Decimal": st.sampled_from(["1.50", "0", "-3"]).map(nodes.String),
    # Attribute filter values as the world's attributes hold them.
    "JSON": st.sampled_from(["postgres", 16, True, 1, "gold", 2.5, 8443, False, "x"]).map(_json),
}

_SDL_SCHEMA = graphql.build_schema(SCHEMA_SDL)


def _required(argument: graphql.GraphQLArgument | graphql.GraphQLInputField | None) -> bool:
    return argument is None or (isinstance(argument.type, graphql.GraphQLNonNull)
                                and argument.default_value is graphql.Undefined)


PAGING = ("first", "after", "last", "before")
PAGING_MODES = {"none": (), "first": ("first",), "first-after": ("first", "after"),
                "last": ("last",), "last-before": ("last", "before"), "as drawn": PAGING}


# A list's generated selection is mostly ``totalCount`` (the generator's simplest choice),
# which reads no item; most pages here select the items with a selection generated for the
# single-item root field instead.
LISTS = {"configurationItems": "configurationItem", "services": "service"}


@st.composite
def page(draw: st.DrawFn, single: str) -> graphql.SelectionSetNode:
    item = draw(gql_st.queries(SCHEMA_SDL, fields=[single], custom_scalars=SCALARS,
                               print_ast=lambda d: d))
    selection = item.definitions[0].selection_set.selections[0].selection_set  # type: ignore[attr-defined]
    extra = draw(st.sampled_from(["", "totalCount", "pageInfo { hasNextPage endCursor }",
                                  "totalCount pageInfo { hasNextPage hasPreviousPage "
                                  "startCursor endCursor }"]))
    text = f"{{ edges {{ cursor node {graphql.print_ast(selection)} }} {extra} }}"
    parsed = graphql.parse(text).definitions[0]
    return parsed.selection_set  # type: ignore[attr-defined,no-any-return]


@st.composite
def operations(draw: st.DrawFn, fields: list[str]) -> str:
    """A hypothesis-graphql query, tidied the way a client writes one: its generator sets
    nearly every optional argument and input field (so ``after`` and ``before`` together,
    refused before anything is read, and filters that match nothing); here paging arguments
    follow one drawn mode per field and other optional arguments and input fields are each
    left out half the time."""
    document = draw(gql_st.queries(SCHEMA_SDL, fields=fields, custom_scalars=SCALARS,
                                   print_ast=lambda d: d))
    operation = document.definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    roots = tuple(
        dataclasses.replace(f, selection_set=draw(page(LISTS[f.name.value])))
        if isinstance(f, graphql.FieldNode) and f.name.value in LISTS
        and draw(st.sampled_from([True, True, True, False])) else f
        for f in operation.selection_set.selections)
    document = dataclasses.replace(document, definitions=(dataclasses.replace(
        operation, selection_set=dataclasses.replace(operation.selection_set,
                                                     selections=roots)),))

    types = graphql.TypeInfo(_SDL_SCHEMA)

    class Tidy(graphql.Visitor):
        def leave_field(self, node: graphql.FieldNode, *_: Any) -> Any:
            definition = types.get_field_def()
            if not node.arguments or definition is None:
                return node
            names = {a.name.value for a in node.arguments}
            kept: tuple[str, ...] = PAGING
            if names & set(PAGING):
                kept = PAGING_MODES[draw(st.sampled_from(list(PAGING_MODES)))]
            arguments = tuple(
                a for a in node.arguments
                if (a.name.value not in PAGING or a.name.value in kept)
                and (a.name.value in PAGING or _required(definition.args.get(a.name.value))
                     or draw(st.booleans())))
            return dataclasses.replace(node, arguments=arguments)

        def leave_object_value(self, node: graphql.ObjectValueNode, *_: Any) -> Any:
            type_ = graphql.get_named_type(types.get_input_type())
            if not isinstance(type_, graphql.GraphQLInputObjectType):
                return node
            fields = tuple(f for f in node.fields
                           if _required(type_.fields.get(f.name.value)) or draw(st.booleans()))
            return dataclasses.replace(node, fields=fields)

    return graphql.print_ast(graphql.visit(document, graphql.TypeInfoVisitor(types, Tidy())))


QUERY_FIELDS = sorted(_SDL_SCHEMA.query_type.fields)  # type: ignore[union-attr]
OTHERS = [f for f in QUERY_FIELDS if f not in TARGETED]


@settings(PROFILE, max_examples=max(1, round(TOTAL * 0.8)))
@given(role=DRAWN_ROLES,
       query=operations(TARGETED))
async def test_generated_reads_over_targeted_fields(diff: Diff, role: str | None,
                                                    query: str) -> None:
    await diff.compare(query, None, role, kind="targeted")


@settings(PROFILE, max_examples=max(1, round(TOTAL * 0.2)))
@given(role=DRAWN_ROLES,
       query=operations(OTHERS))
async def test_generated_reads_over_other_fields(diff: Diff, role: str | None,
                                                 query: str) -> None:
    await diff.compare(query, None, role, kind="other")


def test_the_compiler_answered_its_share(diff: Diff) -> None:
    """Runs after the generated tests (file order): the compiler cannot pass by never
    answering."""
    done = diff.counts["targeted operations"]
    if not done:
        pytest.skip("no generated operation over the targeted fields ran in this session")
    share = diff.counts["targeted compiled"] / done
    print(f"\ncompiled {diff.counts['targeted compiled']} of {done} generated operations over "
          f"{', '.join(TARGETED)}: {share:.1%} (expected at least {EXPECT_COMPILED_SHARE:.0%})")
    assert share >= EXPECT_COMPILED_SHARE


async def test_the_reads_wrote_nothing(diff: Diff, db: Database) -> None:
    """Both paths read the same graph: nothing the operations did wrote to it."""
    assert await fingerprint(db) == diff.fingerprint
