"""OpenTelemetry: gate waits, token requests and upstream calls nest under the tool span, and go out over OTLP."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from mcp import Client
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.sandbox.records import Fault
from tests.conftest import Connect
from tests.results import data
from tests.test_stdio import params


class _Recording(SimpleSpanProcessor):
    """Keeps spans only while a test of this module asks for them (the provider outlives the test)."""

    on = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            super().on_end(span)


_exporter = InMemorySpanExporter()
_recording = _Recording(_exporter)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (installed once: OpenTelemetry allows one), recording for this test only."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_recording)
        trace.set_tracer_provider(provider)
    _exporter.clear()
    _recording.on = True
    try:
        yield _exporter
    finally:
        _recording.on = False
        _exporter.clear()


def children(of: ReadableSpan, finished: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in finished if s.parent is not None and s.parent.span_id == of.context.span_id]


def attrs(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


async def test_upstream_calls_are_spans_under_the_tool_span(
    spans: InMemorySpanExporter, connect: Connect, state: EmulatorState
) -> None:
    state.inject("snapshot_create", Fault(status=429, retry_after_s=1))
    async with connect() as client:
        with anyio.fail_after(30):
            data(await client.call_tool("snapshot", {"name": "traced", "core": "c"}))
            data(await client.call_tool("list_workspaces", {}))
    finished = spans.get_finished_spans()

    tool = next(s for s in finished if s.name == "tools/call snapshot" and s.kind == SpanKind.SERVER)
    assert attrs(tool)["gen_ai.tool.name"] == "snapshot"
    assert attrs(tool)["mcp.method.name"] == "tools/call"
    under = children(tool, finished)
    gates = [s for s in under if s.name == "gate wait neuralsnap"]
    posts = [s for s in under if s.kind == SpanKind.CLIENT]
    assert len(gates) == 2  # the first attempt, and the retry after the 429
    assert [s.name for s in posts] == ["POST /neuralsnap/api/v1/snapshots"] * 2
    first, retry = sorted(posts, key=lambda s: s.start_time or 0)
    assert attrs(first)["http.request.method"] == "POST"
    assert attrs(first)["http.response.status_code"] == 429
    assert first.status.status_code == StatusCode.ERROR
    assert attrs(retry)["http.response.status_code"] == 201
    assert attrs(retry)["http.request.resend_count"] == 1
    assert attrs(retry)["server.address"] == "127.0.0.1"
    assert isinstance(attrs(retry)["server.port"], int)
    assert all(s.context.trace_id == tool.context.trace_id for s in under)

    # The first neuroflash call fetches the token: its request is a span under that call's tool span.
    listing = next(s for s in finished if s.name == "tools/call list_workspaces")
    names = {s.name for s in children(listing, finished)}
    assert {"POST /id/oauth/v2/token", "gate wait neuroflash"} <= names
    assert "GET /neuroflash/api/workspace-service/v1/workspaces" in names
    for span in finished:  # no secret in any attribute
        assert state.issued[0] not in repr(attrs(span))


async def test_a_subprocess_exports_its_spans_to_the_otlp_endpoint(emulator: Emulator) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT pointed at a collector (here a loopback stand-in) receives the spans."""
    received: list[ExportTraceServiceRequest] = []
    arrived = anyio.Event()

    async def collect(request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        received.append(message)
        arrived.set()
        return Response(b"", media_type="application/x-protobuf")

    collector = LoopbackServer(Starlette(routes=[Route("/v1/traces", collect, methods=["POST"])]))
    with collector:
        env = {**emulator.environment(), "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "fs-test"}
        with anyio.fail_after(60):
            async with Client(params(env=env)) as client:
                data(await client.call_tool("list_workspaces", {}))
            await arrived.wait()  # the server flushes its spans as it exits
    exported = [
        (span.name, resource.resource)
        for message in received
        for resource in message.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    names = {name for name, _ in exported}
    assert {"tools/call list_workspaces", "POST /id/oauth/v2/token"} <= names
    service = {a.value.string_value for _, r in exported for a in r.attributes if a.key == "service.name"}
    assert service == {"fs-test"}
