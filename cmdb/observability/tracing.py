"""OpenTelemetry tracing: off unless an OTLP endpoint is configured.

On: FastAPI's instrumentation makes the HTTP server span, strawberry's OpenTelemetry
extension the GraphQL spans (operation, parsing, validation, one per resolver; argument
values are left out), and the database wrapper one span per Neo4j statement or transaction,
all in one trace. Spans go to ``CMDB_OTEL_ENDPOINT`` (or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT``) over OTLP/HTTP.

Off: nothing here runs per request (no extension, no middleware, no span calls).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import TracerProvider

if TYPE_CHECKING:
    from fastapi import FastAPI
    from strawberry.extensions import SchemaExtension

    from cmdb.settings import Settings

# Health probes and scrapes would only add noise to the traces.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"


def tracing_endpoint(settings: Settings) -> str | None:
    """Where spans go, or None when tracing is off."""
    endpoint = (settings.otel_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "")
    return endpoint.strip() or None


def provider_from_settings(settings: Settings) -> TracerProvider | None:
    """A tracer provider exporting to the configured endpoint; None when tracing is off."""
    endpoint = tracing_endpoint(settings)
    if endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = os.environ.get("OTEL_SERVICE_NAME") or settings.otel_service_name
    provider = SdkTracerProvider(resource=Resource.create({"service.name": service}))
    # The standard variable is the base URL (the exporter appends /v1/traces); ours too.
    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return provider


def schema_extensions(provider: TracerProvider | None) -> list[Callable[[], SchemaExtension]]:
    """Strawberry's OpenTelemetry extension when tracing is on; none otherwise."""
    if provider is None:
        return []
    from strawberry.extensions.tracing import OpenTelemetryExtension

    def no_argument_values(args: dict[str, Any], info: Any) -> dict[str, Any]:
        return {}  # argument values may be personal data: spans name fields only

    return [lambda: OpenTelemetryExtension(arg_filter=no_argument_values,
                                           tracer_provider=provider)]


def instrument_app(app: FastAPI, provider: TracerProvider | None) -> None:
    """The HTTP server span around every request (FastAPI's instrumentation)."""
    if provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider,
                                       excluded_urls=EXCLUDED_URLS,
                                       exclude_spans=["receive", "send"])
