"""OpenTelemetry log records: the audit records go out over OTLP when a logs exporter is configured.

Like the spans (`tracing.py`), nothing is set up unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`) is set, and with no logger provider installed `emit` costs one check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry import _logs

from server import __version__

log = logging.getLogger(__name__)


def active() -> bool:
    """Whether a logger provider is installed (by `configure`, or by whoever embeds or tests the server)."""
    # The API's own providers (its proxy until one is set, its no-op) live in its package; any other is real.
    return not type(_logs.get_logger_provider()).__module__.startswith("opentelemetry._logs")


def emit(event: str, body: str, attributes: Mapping[str, Any]) -> None:
    """One log record named `event`; `None` attributes are left out (OpenTelemetry has no null)."""
    if not active():
        return
    logger = _logs.get_logger("flashsnap-mcp", __version__)
    kept = {k: list(v) if isinstance(v, list | tuple) else v for k, v in attributes.items() if v is not None}
    logger.emit(event_name=event, body=body, attributes=kept, severity_number=_logs.SeverityNumber.INFO)


def configure(environ: Mapping[str, str]) -> Any:
    """Export log records over OTLP/HTTP when an endpoint is configured; otherwise leave them off, at no cost."""
    if not (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")):
        return None
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or active():
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        log.warning("no OpenTelemetry logs SDK: audit records are not exported (install flashsnap-mcp[otel])")
        return None
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "flashsnap-mcp",
                                "service.version": __version__})  # fmt: skip
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    _logs.set_logger_provider(provider)
    log.info("exporting audit records over OTLP")
    return provider
