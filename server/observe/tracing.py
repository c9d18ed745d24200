"""OpenTelemetry spans for gate waits, token requests and upstream HTTP calls, and OTLP export when asked for.

The spans nest under the MCP SDK's `tools/call <tool>` span (the SDK opens it around every
request; context variables carry it down to the transport), and use the semantic conventions'
attribute names. With no tracer provider configured, `span()` hands out a shared no-op
context: no span object, no context switch, nothing to export.

`configure()` installs the SDK with an OTLP/HTTP exporter only when `OTEL_EXPORTER_OTLP_ENDPOINT`
(or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the SDK and exporter come with the optional
extra `flashsnap-mcp[otel]`. The exporter reads the other standard `OTEL_*` variables itself.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, StatusCode

from server import __version__
from server.observe.metrics import route_template

log = logging.getLogger(__name__)

_tracer = trace.get_tracer("flashsnap-mcp", __version__)
_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()


def active() -> bool:
    """Whether a tracer provider is installed (by `configure`, or by whoever embeds or tests the server)."""
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | trace.NoOpTracerProvider)


def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, kind: SpanKind = SpanKind.INTERNAL
) -> AbstractContextManager[Span | None]:
    """A child span of the current one, or a no-op (yielding None) when tracing is off."""
    if not active():
        return _NOTHING
    return _tracer.start_as_current_span(name, kind=kind, attributes=dict(attributes or {}))


class _URL(Protocol):
    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int | None: ...


def http_span(method: str, url: _URL, path: str) -> AbstractContextManager[Span | None]:
    """A client span named `METHOD /route/{id}` with the conventions' HTTP attributes (never the query string)."""
    if not active():
        return _NOTHING
    template = route_template(path)
    attributes: dict[str, Any] = {"http.request.method": method, "server.address": url.host, "url.template": template}
    if url.port is not None:
        attributes["server.port"] = url.port
    return span(f"{method} {template}", attributes, kind=SpanKind.CLIENT)


def answered(current: Span | None, status: int) -> None:
    """Record an HTTP answer on a client span: 4xx and 5xx mark it failed, as the conventions say."""
    if current is None:
        return
    current.set_attribute("http.response.status_code", status)
    if status >= 400:
        current.set_attribute("error.type", str(status))
        current.set_status(StatusCode.ERROR)


def failed(current: Span | None, error: BaseException) -> None:
    if current is not None:
        current.set_attribute("error.type", type(error).__qualname__)
        current.set_status(StatusCode.ERROR)


def configure(environ: Mapping[str, str]) -> Any:
    """Export spans over OTLP/HTTP when an endpoint is configured; otherwise leave tracing off, at no cost."""
    if not (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or active():
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed: "
            "install flashsnap-mcp[otel] to export traces"
        )
        return None
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the service name defaults to ours.
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "flashsnap-mcp",
                                "service.version": __version__})  # fmt: skip
    provider = TracerProvider(resource=resource)  # flushes what is buffered when the process exits
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("exporting traces over OTLP")
    return provider
