"""The GraphQL schema: types here are views; resolvers delegate to domain services."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.language import DocumentNode, parse
from graphql.validation import ASTValidationRule
from opentelemetry.trace import TracerProvider
from strawberry.extensions import (
    MaskErrors,
    MaxAliasesLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import validate_document

from cmdb.core.models import DomainError
from cmdb.identity.access import guard_root_fields
from cmdb.observability.metrics import note_errors, note_operation
from cmdb.observability.tracing import schema_extensions
from cmdb.resolvers.catalog import CatalogSubscription
from cmdb.resolvers.health import HealthSubscription
from cmdb.resolvers.mutation import Mutation
from cmdb.resolvers.query import Query
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
    log.error("unexpected error in %s", error.path, exc_info=original)
    return True


class CMDBSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError],
                       execution_context: Any = None) -> None:
        """Client errors (refusals, validation, domain errors) are answers, not incidents:
        log them briefly; unexpected ones are logged with their traceback by the masking
        extension (``_is_internal``)."""
        note_errors(errors)  # metrics: errors by kind
        for error in errors:
            log.info("graphql error at %s: %s", error.path, error.message)


Rules = tuple[type[ASTValidationRule], ...]


class DocumentLimitsAndCache(SchemaExtension):
    """Per request: the token limit, our validation rules (depth, aliases, no introspection
    in production), and parsing and validation done once per document text.

    One extension instead of strawberry's MaxTokensLimiter, AddValidationRules, ParserCache
    and ValidationCache, which cost four sets of hooks per request, and whose validation
    cache hashed the whole parsed document on every lookup; here both caches are keyed by
    the document's text (the parse options and rules are fixed per schema and in the key).
    """

    def __init__(self, rules: Rules, max_tokens: int,
                 parse_cached: Callable[..., DocumentNode],
                 validate_cached: Callable[[Any, str, Rules], list[GraphQLError]]) -> None:
        super().__init__()
        self.rules = rules
        self.max_tokens = max_tokens
        self.parse_cached = parse_cached
        self.validate_cached = validate_cached

    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.parse_options["max_tokens"] = self.max_tokens
        ctx.validation_rules = ctx.validation_rules + self.rules
        yield
        note_operation(ctx)  # metrics: the operation's name

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is None and ctx.query:
            ctx.graphql_document = self.parse_cached(ctx.query, **ctx.parse_options)
        yield

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None and ctx.validation_rules \
                and ctx.pre_execution_errors is None:
            if ctx.query and ctx.parse_options == {"max_tokens": self.max_tokens}:
                ctx.pre_execution_errors = self.validate_cached(
                    ctx.schema._schema, ctx.query, ctx.validation_rules)
            else:  # a document given already parsed, or other parse options: not cached
                ctx.pre_execution_errors = validate_document(
                    ctx.schema._schema, ctx.graphql_document, ctx.validation_rules)
        yield


class MaskInternalErrors(MaskErrors):
    """MaskErrors without its per-request ``isinstance`` check against a runtime protocol
    (which walks the protocol's members every time): any result with errors is masked."""

    def _process_result(self, result: object) -> None:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]


def build_schema(settings: Settings,
                 tracer_provider: TracerProvider | None = None) -> strawberry.Schema:
    # The limiters' validation rules are built once (a limiter made per request would
    # bring new rule classes with it).
    rules = (QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules
             + MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules)
    if not settings.is_development:
        from graphql.validation import NoSchemaIntrospectionCustomRule

        rules.append(NoSchemaIntrospectionCustomRule)
    max_tokens = settings.max_tokens

    # Front ends send the same documents again and again: parse and validate each once.
    @lru_cache(maxsize=256)
    def parse_cached(query: str, **options: Any) -> DocumentNode:
        return parse(query, **options)

    @lru_cache(maxsize=256)
    def validate_cached(schema: Any, query: str, all_rules: Rules) -> list[GraphQLError]:
        return validate_document(schema, parse_cached(query, max_tokens=max_tokens),
                                 all_rules)

    # Factories: a fresh extension per request.
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: DocumentLimitsAndCache(tuple(rules), max_tokens, parse_cached,
                                       validate_cached),
        lambda: MaskInternalErrors(
            should_mask_error=_is_internal,
            error_message="Internal error; the request id is in the X-Request-ID header",
        ),
    ]
    extensions[:0] = schema_extensions(tracer_provider)  # tracing: none unless configured
    schema = CMDBSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[ConfigurationItem, Service],
        extensions=extensions,
        config=StrawberryConfig(auto_camel_case=True),
    )
    guard_root_fields(schema._schema)
    return schema


def sdl() -> str:
    """The schema as SDL; settings do not change it."""
    return strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription,
                             types=[ConfigurationItem, Service]).as_str() + "\n"
