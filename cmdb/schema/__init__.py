"""The GraphQL schema: types here are views; resolvers delegate to domain services."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from cmdb.core.models import DomainError
from cmdb.identity.access import guard_root_fields
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
        for error in errors:
            log.info("graphql error at %s: %s", error.path, error.message)


def build_schema(settings: Settings) -> strawberry.Schema:
    # Factories: a fresh extension per request.
    # The limiters' validation rules are built once: the validation cache is keyed by the
    # rule classes, and a limiter made per request brings new classes (a miss every time).
    rules = (QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules
             + MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules)
    if not settings.is_development:
        from graphql.validation import NoSchemaIntrospectionCustomRule

        rules.append(NoSchemaIntrospectionCustomRule)
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        # Front ends send the same documents again and again: parse and validate each once.
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        lambda: MaskErrors(
            should_mask_error=_is_internal,
            error_message="Internal error; the request id is in the X-Request-ID header",
        ),
    ]
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
