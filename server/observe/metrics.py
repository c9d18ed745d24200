"""Prometheus metrics: every name and label lives here; the rest of the server makes small observer calls.

`Observer` is what the scheduler, the token manager and the call wrapper report to; its methods
do nothing, which is the whole cost of metrics when nothing exports them (stdio without
`FLASHSNAP_METRICS_PORT`, the in-memory tests). `Metrics` records them in a registry of its own
per runtime, never the process-global default, so several servers in one process never collide.

Label values are bounded: services and tools are fixed sets, endpoints are route templates with
ids replaced, workspaces and credentials are capped (later ones read "other"), and a credential
is named by a fingerprint of what identifies it, never by the secret.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

log = logging.getLogger(__name__)

# prometheus_client is imported where metrics are recorded or served (`Metrics`, `serve_metrics`, `content_type`),
# never on a plain stdio start, which records nothing.


def content_type() -> str:
    """The exposition format's content type, as the installed prometheus_client writes it."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    return str(CONTENT_TYPE_LATEST)


MAX_VALUES = 50  # distinct values one open-ended label may take before the rest read "other"
WAIT_BUCKETS = (0.005, 0.05, 0.25, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_ID_SEGMENT = re.compile(r"^(?!v\d+$)(?=.*\d).+$|^.{33,}$")  # has a digit (but is no API version), or is long


def route_template(path: str) -> str:
    """`/api/usage-service/v1/workspaces/7d4f…/quotas` -> `/api/usage-service/v1/workspaces/{id}/quotas`."""
    return "/".join("{id}" if _ID_SEGMENT.match(part) else part for part in path.split("/"))


class _Bounded:
    """At most `limit` distinct values of one label; the ones after read "other"."""

    def __init__(self, limit: int = MAX_VALUES) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return "other"
        self._seen.add(value)
        return value


class Observer:
    """What the server reports as it works. This one ignores it all: metrics off, at no cost."""

    enabled = False

    def credential(self, service: str, fingerprint: str) -> None:
        """Name the credential behind a service's gate (a hash prefix, never the secret)."""

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        """A tool call ended: `outcome` is "ok" or the error code."""

    def principal_call(self, principal: str, tool: str, outcome: str) -> None:
        """A tool call by a named principal ended (tokens, oauth): the team file's name, else "other"."""

    def scope_refused(self, principal: str, scope: str) -> None:
        """A call was refused with 403 insufficient_scope: the principal lacked `scope`."""

    def budget_spent(self, principal: str, stock: str, amount: int) -> None:
        """A named principal's call spent `amount` of a stock its budgets count: words, crystallize, searches."""

    def principal_turn(self, principal: str, *, queued: int, sent: int = 0, waited_s: float = 0.0) -> None:
        """A principal's call joined a gate's queue (`queued` 1) or left it (-1), let out (`sent` 1) or not, after
        waiting `waited_s` seconds; `principal` is its label (a team file's name, other, anonymous or local)."""

    def upstream(self, service: str, method: str, path: str, status: str) -> None:
        """One upstream attempt: `status` is the HTTP status, or "error" when no answer came."""

    def retry(self, service: str, reason: str) -> None:
        """An attempt is repeated: "rate_limited", "server_error" or "transport"."""

    def gate_waited(self, service: str, seconds: float) -> None: ...

    def gate_queued(self, service: str, queued: int) -> None: ...

    def rate_limit(self, service: str, limit: int | None, remaining: int | None) -> None: ...

    def token_request(self, outcome: str) -> None:
        """One request to the token endpoint: "ok", "rejected" or "unavailable"."""

    def token_refresh(self, trigger: str) -> None:
        """A refresh this process started: "background", "blocking" or "after_401"."""

    def token_failure(self, kind: str) -> None:
        """A token fetch gave up (after its retries): "rejected" or "unavailable"."""

    def generate_refused(self, reason: str) -> None: ...

    def words_spent(self, workspace: str, words: int) -> None: ...

    def slots_in_use(self, workspace: str, delta: int) -> None: ...


NO_METRICS = Observer()


class Metrics(Observer):
    """The metrics of one runtime, in their own registry, exposed by `/metrics` or `FLASHSNAP_METRICS_PORT`."""

    enabled = True

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self._tool_calls = Counter(
            "flashsnap_tool_calls", "Tool calls by tool and outcome (ok or the error code).", ["tool", "outcome"],
            registry=r,
        )  # fmt: skip
        self._tool_seconds = Histogram(
            "flashsnap_tool_call_duration_seconds", "Time from a tool call's start to its result, waits included.",
            ["tool"], buckets=CALL_BUCKETS, registry=r,
        )  # fmt: skip
        self._upstream = Counter(
            "flashsnap_upstream_requests",
            "Upstream request attempts by service, method, endpoint (route template) and status ('error': no answer).",
            ["service", "method", "endpoint", "status"], registry=r,
        )  # fmt: skip
        self._retries = Counter(
            "flashsnap_upstream_retries", "Upstream attempts repeated, by reason.", ["service", "reason"], registry=r
        )
        self._throttled = Counter(
            "flashsnap_upstream_429", "Upstream answers with HTTP 429 (rate limits and spent quotas).", ["service"],
            registry=r,
        )  # fmt: skip
        self._gate_wait = Histogram(
            "flashsnap_gate_wait_seconds", "Time a request waited at its credential's gate before it was sent.",
            ["service"], buckets=WAIT_BUCKETS, registry=r,
        )  # fmt: skip
        self._queued = Gauge(
            "flashsnap_gate_queued", "Calls of this process waiting at a gate now.", ["service"], registry=r
        )
        self._limit = Gauge(
            "flashsnap_rate_limit_limit", "The upstream's request limit per window, as its headers last said.",
            ["service", "credential"], registry=r,
        )  # fmt: skip
        self._remaining = Gauge(
            "flashsnap_rate_limit_remaining", "Requests left in the current window, as last known.",
            ["service", "credential"], registry=r,
        )  # fmt: skip
        self._token_requests = Counter(
            "flashsnap_token_requests",
            "Requests to the neuroflash token endpoint, by outcome.",
            ["outcome"],
            registry=r,
        )
        self._token_refreshes = Counter(
            "flashsnap_token_refreshes", "Token refreshes this process started, by trigger.", ["trigger"], registry=r
        )
        self._token_failures = Counter(
            "flashsnap_token_failures", "Token fetches that failed after their retries, by kind.", ["kind"], registry=r
        )
        self._refusals = Counter(
            "flashsnap_generate_refusals", "generate calls refused without words spent, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self._words = Counter(
            "flashsnap_words_spent", "Words charged by finished generations, by workspace.", ["workspace"], registry=r
        )
        self._slots = Gauge(
            "flashsnap_generation_slots_in_use", "Generation streams this process holds now, by workspace.",
            ["workspace"], registry=r,
        )  # fmt: skip
        self._principal_calls = Counter(
            "flashsnap_principal_tool_calls",
            "Tool calls by principal (the team file's names, else other), tool and outcome.",
            ["principal", "tool", "outcome"], registry=r,
        )  # fmt: skip
        self._scope_refusals = Counter(
            "flashsnap_scope_refusals",
            "Calls refused with 403 insufficient_scope, by principal and the scope it lacked.",
            ["principal", "scope"], registry=r,
        )  # fmt: skip
        self._budget_spent = Counter(
            "flashsnap_principal_spent",
            "What each principal spent of the stocks its budgets count (words, crystallize, searches).",
            ["principal", "stock"], registry=r,
        )  # fmt: skip
        self._principal_queued = Gauge(
            "flashsnap_principal_queued", "Calls of this process waiting at a gate now, by principal.",
            ["principal"], registry=r,
        )  # fmt: skip
        self._principal_sent = Counter(
            "flashsnap_principal_sent", "Upstream requests let out by the gates, by principal.", ["principal"],
            registry=r,
        )  # fmt: skip
        self._principal_waited = Counter(
            "flashsnap_principal_waited_seconds", "Seconds calls waited at the gates for their turn, by principal.",
            ["principal"], registry=r,
        )  # fmt: skip
        self._credentials: dict[str, str] = {}
        self._endpoints = _Bounded()
        self._workspaces = _Bounded()
        self._tools = _Bounded()
        self._principals = _Bounded(1000)  # the team file's names already are bounded; this bounds a huge file

    def credential(self, service: str, fingerprint: str) -> None:
        self._credentials[service] = fingerprint

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        tool = self._tools(tool)
        self._tool_calls.labels(tool, outcome).inc()
        self._tool_seconds.labels(tool).observe(seconds)

    def principal_call(self, principal: str, tool: str, outcome: str) -> None:
        self._principal_calls.labels(self._principals(principal), self._tools(tool), outcome).inc()

    def scope_refused(self, principal: str, scope: str) -> None:
        self._scope_refusals.labels(self._principals(principal), scope).inc()

    def budget_spent(self, principal: str, stock: str, amount: int) -> None:
        self._budget_spent.labels(self._principals(principal), stock).inc(amount)

    def principal_turn(self, principal: str, *, queued: int, sent: int = 0, waited_s: float = 0.0) -> None:
        label = self._principals(principal)
        self._principal_queued.labels(label).inc(queued)
        if sent:
            self._principal_sent.labels(label).inc(sent)
        if waited_s > 0:
            self._principal_waited.labels(label).inc(waited_s)

    def upstream(self, service: str, method: str, path: str, status: str) -> None:
        self._upstream.labels(service, method, self._endpoints(route_template(path)), status).inc()
        if status == "429":
            self._throttled.labels(service).inc()

    def retry(self, service: str, reason: str) -> None:
        self._retries.labels(service, reason).inc()

    def gate_waited(self, service: str, seconds: float) -> None:
        self._gate_wait.labels(service).observe(max(0.0, seconds))

    def gate_queued(self, service: str, queued: int) -> None:
        self._queued.labels(service).set(queued)

    def rate_limit(self, service: str, limit: int | None, remaining: int | None) -> None:
        credential = self._credentials.get(service, "unknown")
        if limit is not None:
            self._limit.labels(service, credential).set(limit)
        if remaining is not None:
            self._remaining.labels(service, credential).set(remaining)

    def token_request(self, outcome: str) -> None:
        self._token_requests.labels(outcome).inc()

    def token_refresh(self, trigger: str) -> None:
        self._token_refreshes.labels(trigger).inc()

    def token_failure(self, kind: str) -> None:
        self._token_failures.labels(kind).inc()

    def generate_refused(self, reason: str) -> None:
        self._refusals.labels(reason).inc()

    def words_spent(self, workspace: str, words: int) -> None:
        self._words.labels(self._workspaces(workspace)).inc(words)

    def slots_in_use(self, workspace: str, delta: int) -> None:
        self._slots.labels(self._workspaces(workspace)).inc(delta)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


@contextlib.contextmanager
def serve_metrics(observer: Observer, port: int, host: str = "127.0.0.1") -> Iterator[None]:
    """Serve `/metrics` on its own port (for stdio) for as long as the block runs; a busy port is a warning."""
    if not isinstance(observer, Metrics):
        yield
        return
    try:
        from prometheus_client import start_http_server

        server, thread = start_http_server(port, addr=host, registry=observer.registry)
    except OSError as exc:
        log.warning("metrics not served: cannot listen on %s:%d (%s)", host, port, exc.strerror or exc)
        yield
        return
    log.info("metrics at http://%s:%d/metrics", host, server.server_port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def fingerprint(account: str) -> str:
    """A short, stable, non-secret name for a credential: the start of its account key's hash."""
    return account.rsplit(":", 1)[-1][:8]
