"""The GraphQL schema: types here are views; resolvers delegate to domain services."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import strawberry
from graphql import GraphQLError, validate
from graphql.language import DocumentNode, parse
from graphql.validation import ASTValidationRule
from opentelemetry.trace import TracerProvider
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.schema.config import BatchingConfig, StrawberryConfig
from strawberry.schema.types.base_scalars import isoformat, wrap_parser
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.scalar import ScalarDefinition

from cmdb.api.compiled import CompiledReads
from cmdb.chargeback.service import MAX_LINES_PAGE
from cmdb.compiler.cache import PlanCache
from cmdb.core.models import DomainError
from cmdb.db.availability import is_unavailable, unavailable_graphql_error
from cmdb.identity.access import guard_root_fields
from cmdb.items.history import MAX_HISTORY_PAGE
from cmdb.logs import request_id_var
from cmdb.observability.metrics import note_errors, note_operation
from cmdb.observability.tracing import schema_extensions
from cmdb.resolvers.catalog import CatalogSubscription
from cmdb.resolvers.health import HealthSubscription
from cmdb.resolvers.mutation import Mutation
from cmdb.resolvers.query import Query
from cmdb.schema.limits import CostPlan, Limits, compile_cost, shape_errors
from cmdb.schema.types import ConfigurationItem, Service
from cmdb.settings import Settings

log = logging.getLogger("cmdb.graphql")


@strawberry.type
class Subscription(HealthSubscription, CatalogSubscription):
    pass


def _is_internal(error: GraphQLError) -> bool:
    """Domain errors and GraphQL validation errors are for the client; all else is masked."""
    original = error.original_error
    if original is None or isinstance(original, DomainError | GraphQLError):
        return False
    if is_unavailable(original):  # replaced by a plain "unavailable" error, no traceback
        return True
    log.error("unexpected error in %s", error.path, exc_info=original)
    return True


# Times the CMDB computes with (windows, months, durations): near datetime's own limits
# (year 1, year 9999) that arithmetic overflowed into a 500.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if not EARLIEST <= parsed < LATEST:
        raise ValueError("years 1900 to 2999 only")
    return parsed


# DateTime as strawberry's, except that a value without an offset is read as UTC (services
# compare input with the aware clock, and a naive value made that a TypeError) and that
# it must lie between 1900 and 2999.
SCALARS: dict[object, ScalarDefinition] = {datetime: ScalarDefinition(
    name="DateTime",
    description="Date with time (isoformat)",
    specified_by_url=None,
    serialize=isoformat,
    parse_value=wrap_parser(_aware, "DateTime"),
    parse_literal=None,
    origin=datetime,
)}

_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


class CMDBSchema(strawberry.Schema):
    hide_suggestions = False

    def process_errors(self, errors: list[GraphQLError],
                       execution_context: Any = None) -> None:
        """Client errors (refusals, validation, domain errors) are answers, not incidents:
        log them briefly; unexpected ones are logged with their traceback by the masking
        extension (``_is_internal``). Outside development, "Did you mean ...?" hints (which
        would spell out the schema to someone guessing names) are cut from every message."""
        note_errors(errors)  # metrics: errors by kind
        for error in errors:
            if self.hide_suggestions and "Did you mean" in error.message:
                error.message = _SUGGESTION.sub("", error.message)
            log.info("graphql error at %s: %s", error.path, error.message)

    async def execute(self, query: str | None, variable_values: dict[str, Any] | None = None,
                      context_value: Any | None = None, root_value: Any | None = None,
                      operation_name: str | None = None,
                      allowed_operation_types: Iterable[OperationType] | None = None,
                      operation_extensions: dict[str, Any] | None = None) -> ExecutionResult:
        """Subscriptions run over the websocket only (``subscribe``); over HTTP they are
        refused (a 400) instead of failing inside."""
        allowed = set(allowed_operation_types if allowed_operation_types is not None
                      else (OperationType.QUERY, OperationType.MUTATION))
        allowed.discard(OperationType.SUBSCRIPTION)
        return await super().execute(query, variable_values, context_value, root_value,
                                     operation_name, allowed, operation_extensions)


Rules = tuple[type[ASTValidationRule], ...]


class DocumentChecks:
    """What runs between parsing and execution, cached per document text: the document
    limits (``cmdb.schema.limits``: shape, then page sizes and cost), then validation. The
    cheap limits go first, so an abusive document is refused before graphql-core's
    validation (which is quadratic in places) ever sees it."""

    def __init__(self, schema: Callable[[], Any], limits: Limits, max_tokens: int,
                 hide_suggestions: bool) -> None:
        self.schema = schema
        self.limits = limits
        self.max_tokens = max_tokens
        self.hide_suggestions = hide_suggestions
        self.parse_cached = lru_cache(maxsize=256)(self.parse)
        self.shape_cached = lru_cache(maxsize=256)(
            lambda query: self.shape(self.parse_cached(query, max_tokens=max_tokens)))
        self.cost_cached = lru_cache(maxsize=256)(
            lambda query, name: self.cost(self.parse_cached(query, max_tokens=max_tokens),
                                          name))
        self.validate_cached = lru_cache(maxsize=256)(
            lambda query, rules: self.validate(
                self.parse_cached(query, max_tokens=max_tokens), rules))

    @staticmethod
    def parse(query: str, **options: Any) -> DocumentNode:
        return parse(query, **options)

    def shape(self, document: DocumentNode) -> list[GraphQLError]:
        return shape_errors(document, self.limits)

    def cost(self, document: DocumentNode, operation_name: str | None) -> CostPlan:
        return compile_cost(self.schema(), document, operation_name, self.limits)

    def validate(self, document: DocumentNode, rules: Rules) -> list[GraphQLError]:
        return validate(self.schema(), document,
                        (*rules, MaybeNullValidationRule, OneOfInputValidationRule),
                        hide_suggestions=self.hide_suggestions)

    def errors(self, query: str | None, document: DocumentNode, cached: bool,
               operation_name: str | None, variables: dict[str, Any] | None,
               rules: Rules) -> list[GraphQLError]:
        if cached and query:
            return (self.shape_cached(query)
                    or self.cost_cached(query, operation_name).check(variables)
                    or self.validate_cached(query, rules))
        return (self.shape(document)
                or self.cost(document, operation_name).check(variables)
                or self.validate(document, rules))


class DocumentLimitsAndCache(SchemaExtension):
    """Per request: the token limit, then parsing and :class:`DocumentChecks` (limits and
    validation, with no introspection in production), each done once per document text.

    One extension instead of strawberry's MaxTokensLimiter, AddValidationRules, ParserCache
    and ValidationCache, which cost four sets of hooks per request, and whose validation
    cache hashed the whole parsed document on every lookup; here the caches are keyed by the
    document's text (the parse options and rules are fixed per schema and in the key). A
    request with a cached document only evaluates its cost plan with its variables.
    """

    def __init__(self, rules: Rules, checks: DocumentChecks) -> None:
        super().__init__()
        self.rules = rules
        self.checks = checks

    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.parse_options["max_tokens"] = self.checks.max_tokens
        ctx.validation_rules = ctx.validation_rules + self.rules
        yield
        note_operation(ctx)  # metrics: the operation's name
        release = getattr(ctx.context, "release", None)
        if release is not None:  # the loaders' caches: see Context.release
            release()

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is None and ctx.query:
            ctx.graphql_document = self.checks.parse_cached(ctx.query, **ctx.parse_options)
        yield

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None and ctx.validation_rules \
                and ctx.pre_execution_errors is None:
            # Not cached: a document given already parsed, or other parse options.
            cached = ctx.parse_options == {"max_tokens": self.checks.max_tokens}
            ctx.pre_execution_errors = self.checks.errors(
                ctx.query, ctx.graphql_document, cached, ctx._provided_operation_name,
                ctx.variables, ctx.validation_rules)
        yield


class MaskInternalErrors(MaskErrors):
    """MaskErrors without its per-request ``isinstance`` check against a runtime protocol
    (which walks the protocol's members every time): any result with errors is masked.
    A masked error carries the request id (also in the X-Request-ID header), which finds
    the logged traceback."""

    def _process_result(self, result: object) -> None:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if is_unavailable(error.original_error):
            return unavailable_graphql_error(error)  # the router answers it with 503
        rid = request_id_var.get() or ""
        message = f"{self.error_message} (request id {rid})" if rid else self.error_message
        return GraphQLError(message, error.nodes, error.source, error.positions, error.path,
                            None, {"code": "INTERNAL", "requestId": rid} if rid
                            else {"code": "INTERNAL"})


# Fields whose largest page is not max_page_size.
PAGE_SIZE_OVERRIDES = {
    "Query.chargeLines": MAX_LINES_PAGE,
    "ConfigurationItem.history": MAX_HISTORY_PAGE,
}


def build_schema(settings: Settings,
                 tracer_provider: TracerProvider | None = None) -> strawberry.Schema:
    limits = Limits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_directives=settings.max_directives,
        max_field_repeats=settings.max_field_repeats,
        max_cost=settings.max_query_cost,
        default_page_size=settings.default_page_size,
        max_page_size=settings.max_page_size,
        page_size_overrides=PAGE_SIZE_OVERRIDES,
    )
    # Rules are built once (rules made per request would defeat the validation cache).
    rules: tuple[type[ASTValidationRule], ...] = ()
    hide_suggestions = not settings.is_development
    if not settings.is_development:
        from graphql.validation import NoSchemaIntrospectionCustomRule

        rules = (NoSchemaIntrospectionCustomRule,)
    # Front ends send the same documents again and again: parse and check each once.
    checks = DocumentChecks(lambda: schema._schema, limits, settings.max_tokens,
                            hide_suggestions)

    # Factories: a fresh extension per request.
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: DocumentLimitsAndCache(rules, checks),
        lambda: MaskInternalErrors(
            should_mask_error=_is_internal,
            error_message="Internal error",
        ),
    ]
    if settings.read_compiler:
        plans = PlanCache()
        extensions.append(lambda: CompiledReads(plans))
    extensions[:0] = schema_extensions(tracer_provider)  # tracing: none unless configured
    batching = (BatchingConfig(max_operations=settings.max_batch_operations)
                if settings.max_batch_operations > 0 else None)
    schema = CMDBSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[ConfigurationItem, Service],
        extensions=extensions,
        scalar_overrides=SCALARS,
        config=StrawberryConfig(auto_camel_case=True,
                                disable_field_suggestions=hide_suggestions,
                                batching_config=batching),
    )
    schema.hide_suggestions = hide_suggestions
    guard_root_fields(schema._schema)
    return schema


def sdl() -> str:
    """The schema as SDL; settings do not change it."""
    return strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription,
                             types=[ConfigurationItem, Service],
                             scalar_overrides=SCALARS).as_str() + "\n"
