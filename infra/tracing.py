"""Tracing (OpenTelemetry): one decision is one trace, from the HTTP request through the workflow update to
the effects activity and its SQL (issue 18).

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (the standard OpenTelemetry variable) is set, or a test gives an
exporter. Then: FastAPI's instrumentation on the API, asyncpg's on every pool, and the Temporal SDK's
`TracingInterceptor` on the client, which the worker built on that client uses too, so the trace context
travels in Temporal's headers from the API into the workflow and on to its activities.
"""

from __future__ import annotations

import os
from typing import Any

_provider: Any = None


def setup(service_name: str, exporter: Any = None) -> Any:
    """Start tracing for this process; returns the tracer provider, or None when tracing is off."""
    global _provider
    if exporter is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    AsyncPGInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    return provider


def shutdown() -> None:
    global _provider
    if _provider is None:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().uninstrument()
    _provider.shutdown()
    _provider = None


def interceptors() -> list[Any]:
    """The Temporal client's interceptors: the SDK's TracingInterceptor when tracing is on."""
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer=_provider.get_tracer("temporalio"))]


def instrument_app(app: Any) -> None:
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls="health/live,metrics")
