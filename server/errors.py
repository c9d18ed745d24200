"""The error tree: every failure a tool can meet, each carrying what a model needs to act on it.

```
FlashsnapError                   what happened, what to do, request id, retry time
├── ConfigurationError           the environment is invalid (raised at start-up only)
├── InvalidArguments             arguments the input schema alone cannot judge
├── MissingCredential            a tool needs a variable that is not set
├── ToolDisabled                 the tool is turned off by the operator or this request's headers
├── BudgetExhausted              the caller's own budget (team file) or share of scarce words is spent
├── NotConfirmed                 the user was not asked, or did not agree: nothing was sent
│   ├── ConfirmationRequired     a client that cannot ask: ask the user, then call again with confirm: true
│   └── Declined                 the user declined or cancelled the question
└── UpstreamError                the upstream refused or failed a request
    ├── CredentialsRejected      client id/secret or API key refused (never retried)
    ├── PermissionDenied         a valid key whose plan or permissions do not allow the call (never retried)
    ├── NotFound                 unknown workspace or snapshot
    ├── RouteMissing             the API has no such route (a gateway 404: nothing processed)
    ├── AccessDenied             a 403 with no known reason: rights in the workspace, plan, a limit
    ├── UpstreamRejected         the upstream judged the request invalid (400/422)
    ├── ModelNotAvailable        the model is not on the workspace's plan
    ├── QuotaExhausted           daily or monthly word quota spent
    ├── FairUseReached           the workspace hit its fair-use limit
    ├── RateLimited              too many requests; retry_after_s says when to retry
    └── UpstreamUnavailable      5xx, timeout, broken connection, malformed answer
        ├── IncompleteStream     a generation stream ended without saying it had finished
        ├── UpstreamStreamError  a generation stream carried an error event (the upstream's words quoted)
        └── ShutdownCut          the server shut down before the call finished (FLASHSNAP_SHUTDOWN_GRACE_S)
```

`server.tooling.calls` turns these into `isError` tool results, in that one place.
Messages never contain a secret: they are built from codes and public facts only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal


class FlashsnapError(Exception):
    """Base of every anticipated failure; `str()` is the text a model reads."""

    code = "error"
    default_hint = ""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        self.details = details or {}

    def __str__(self) -> str:
        parts = [self.message]
        if self.hint:
            parts.append(self.hint)
        if self.retry_after_s is not None:
            parts.append(f"Retry after {self.retry_after_s:.0f} s.")
        if self.request_id:
            parts.append(f"(upstream request id: {self.request_id})")
        return " ".join(parts)

    def payload(self) -> dict[str, Any]:
        """The structured form of the error, for `structuredContent` of an `isError` result."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        if self.request_id:
            body["request_id"] = self.request_id
        if self.retry_after_s is not None:
            body["retry_after_s"] = round(self.retry_after_s, 3)
        body.update(self.details)
        return body


class ConfigurationError(FlashsnapError):
    code = "configuration_error"


class InvalidArguments(FlashsnapError):
    code = "invalid_arguments"
    default_hint = "Correct the arguments and call the tool again."


class MissingCredential(FlashsnapError):
    code = "missing_credential"

    def __init__(self, variables: str, service: str) -> None:
        super().__init__(
            f"{service} is not configured: {variables} is not set.",
            hint=f"Ask the user to set {variables} in the server's environment and restart it.",
            details={"variables": variables},
        )


class ToolDisabled(FlashsnapError):
    code = "tool_disabled"

    def __init__(self, tool: str, why: str, enable: str) -> None:
        super().__init__(
            f"The tool {tool} is turned off on this server: {why}.",
            hint=f"It is not an error in the arguments; to use it, {enable}.",
            details={"tool": tool},
        )


class BudgetExhausted(FlashsnapError):
    """A call the caller's own budget cannot pay for (the team file's caps, or its share of scarce words):
    refused before anything is sent; other principals are not affected."""

    code = "budget_exhausted"

    def __init__(
        self, message: str, *, stock: str, period: str | None, resets_at: datetime | None, reason: str | None = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        when = f" It resets at {resets_at.isoformat()}." if resets_at else ""
        kwargs.setdefault("hint", f"Nothing was sent. Do not retry before the reset.{when}")
        super().__init__(message, **kwargs)
        self.details.update(
            {"scope": "principal", "stock": stock, "period": period,
             "resets_at": resets_at.isoformat() if resets_at else None}
        )  # fmt: skip
        if reason is not None:
            self.details["reason"] = reason


class NotConfirmed(FlashsnapError):
    """A call that deletes data or could spend much went no further than the question: nothing was sent."""

    code = "not_confirmed"


class ConfirmationRequired(NotConfirmed):
    code = "confirmation_required"


class Declined(NotConfirmed):
    code = "declined"
    default_hint = (
        "Do not call it again unless the user asks for it. If the user says no question reached them, tell them "
        "their client answered it, and which setting the message names."
    )


class UpstreamError(FlashsnapError):
    code = "upstream_error"

    def __init__(self, message: str, *, status: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status


class CredentialsRejected(UpstreamError):
    code = "credentials_rejected"
    default_hint = "Check the service account's credentials with the user; retrying will not help."


class PermissionDenied(UpstreamError):
    code = "permission_denied"
    default_hint = "Retrying will not help: the account's plan or the key's permissions must change first."


class NotFound(UpstreamError):
    code = "not_found"


class UpstreamRejected(UpstreamError):
    code = "invalid_request"
    default_hint = "Correct the request and call the tool again."


class ModelNotAvailable(UpstreamError):
    code = "model_not_available"
    default_hint = "Call list_models to see the models this workspace's plan includes, and pick one of them."


class QuotaExhausted(UpstreamError):
    code = "quota_exhausted"

    def __init__(
        self,
        message: str,
        *,
        period: Literal["daily", "monthly"] | None,
        resets_at: datetime | None,
        **kwargs: Any,
    ) -> None:
        when = f" It resets at {resets_at.isoformat()}." if resets_at else ""
        kwargs.setdefault("hint", f"Do not retry before the reset.{when} No words were spent.")
        super().__init__(message, **kwargs)
        self.period = period
        self.resets_at = resets_at
        self.details.update({"period": period, "resets_at": resets_at.isoformat() if resets_at else None})


class FairUseReached(UpstreamError):
    code = "fair_use_reached"
    default_hint = "Generation is blocked until the fair-use limit resets. No words were spent."


class RateLimited(UpstreamError):
    code = "rate_limited"

    def __init__(self, message: str, *, scope: str, retry_after_s: float, **kwargs: Any) -> None:
        kwargs.setdefault("hint", "Wait, then call the tool again.")
        super().__init__(message, retry_after_s=retry_after_s, **kwargs)
        self.scope = scope
        self.details.update({"reason": "rate_limited", "scope": scope})


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"

    def __init__(self, message: str, *, maybe_processed: bool = False, **kwargs: Any) -> None:
        if "hint" not in kwargs:
            kwargs["hint"] = (
                "The request may have reached the upstream, so it was not repeated automatically; "
                "check before repeating it."
                if maybe_processed
                else "Nothing was processed; it is safe to call the tool again in a moment."
            )
        super().__init__(message, **kwargs)
        self.maybe_processed = maybe_processed
        self.details["maybe_processed"] = maybe_processed


class IncompleteStream(UpstreamUnavailable):
    code = "incomplete_stream"


class UpstreamStreamError(UpstreamUnavailable):
    """An error event in the middle of a generation stream: the text before it is partial, words may be spent."""

    code = "upstream_stream_error"


class ShutdownCut(UpstreamUnavailable):
    """A call still running when the shutdown grace ran out: cut off, and answered with what is known."""

    code = "shutdown"


class AccessDenied(UpstreamError):
    """A 403 that names no known reason: the workspace, the service account's rights, the plan or a limit."""

    code = "access_denied"
    default_hint = (
        "The service account may not do this in that workspace (its rights, the plan, or a limit reached). "
        "Call check_quota for the workspace, or pick another with list_workspaces; retrying as is will not help."
    )


class RouteMissing(UpstreamError):
    """The upstream has no such route at the configured API URL: a gateway 404, so nothing was processed."""

    code = "route_missing"

    def __init__(self, message: str, *, paths: list[str], **kwargs: Any) -> None:
        super().__init__(message, status=404, **kwargs)
        self.paths = paths
        self.details.update({"paths_tried": paths, "maybe_processed": False})
