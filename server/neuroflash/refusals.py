"""What neuroflash's error answers mean: its codes, words and hints, on the one ladder (`server.upstream.ladder`).

The errors page documents statuses only; the codes are assumptions, so a missing or unknown one still gives
the status's kind of error, with the upstream's words quoted (an HTML page is not quoted).
"""

from __future__ import annotations

from server.errors import AccessDenied, FairUseReached, ModelNotAvailable, NotFound, QuotaExhausted, UpstreamError
from server.upstream.ladder import Refusal, Words

SERVICE = "neuroflash"


def _where(r: Refusal) -> str:
    return f" for workspace {r.subject}" if r.subject else ""


def _not_found(r: Refusal) -> UpstreamError:
    # The caller has ruled out a missing route: the 404 is the service's, for the workspace or what it names.
    named = r.code == "NOT_FOUND" or "workspace" in r.message.lower()
    return NotFound(
        f"neuroflash does not know the workspace {r.subject!r}{r.said}"
        if r.subject and named
        else f"neuroflash answered 404 (not found){_where(r)}{r.said}",
        hint="Call list_workspaces to see the workspaces this account can use"
        + (", and list_models for the models." if r.subject and not named else "."),
        **r.known,
    )


def _forbidden(r: Refusal) -> UpstreamError:
    return AccessDenied(
        f"neuroflash refused access{_where(r)} (403: insufficient permissions or a limit reached){r.said}",
        details={"workspace_id": r.subject} if r.subject else None,
        **r.known,
    )


def _quota(r: Refusal) -> UpstreamError:
    return QuotaExhausted(
        f"neuroflash refused the generation for its quota{r.said}", period=None, resets_at=None, **r.known
    )


WORDS = Words(
    scope=SERVICE,
    wait_s=1.0,
    unauthorized=lambda r: f"neuroflash refused the service account's access token, even a freshly issued one{r.said}.",
    forbidden=_forbidden,
    not_found=_not_found,
    rate_limited=lambda r: f"neuroflash answered 429 (rate limit or quota exceeded){r.said}",
    rejected=lambda r: f"neuroflash rejected the request (HTTP {r.status}){r.said}",
    unavailable=lambda r: f"neuroflash answered HTTP {r.status}{r.said}",
    codes={
        (403, "MODEL_NOT_AVAILABLE"): lambda r: ModelNotAvailable(f"neuroflash refused the model{r.said}", **r.known),
        (403, "FAIR_USE_LIMIT_REACHED"): lambda r: FairUseReached(
            "The workspace has reached its fair-use limit.", **r.known
        ),
        (429, "QUOTA_EXCEEDED"): _quota,
    },
)
