"""What `flashsnap-mcp check` found: one finding per thing tried, the fixes a person makes, and the table it prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from server import __version__
from server.errors import FlashsnapError

Status = Literal["ok", "warn", "fail", "skip"]
MARKS: dict[Status, str] = {"ok": "ok", "warn": "warn", "fail": "FAIL", "skip": "-"}


@dataclass
class Finding:
    """One line of the report: what was tried, how it went, the facts, and the fix when it failed."""

    service: str
    item: str
    status: Status
    detail: str
    fix: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> Finding:
        finding = Finding(*args, **kwargs)
        self.findings.append(finding)
        return finding

    @property
    def ok(self) -> bool:
        """Everything configured works, and something is configured."""
        configured = [f for f in self.findings if f.service in ("neuroflash", "neuralsnap") and f.status != "skip"]
        return bool(configured) and not any(f.status == "fail" for f in self.findings)


# What a person fixes, by service and error code; the model-facing hint says what a model should do instead.
FIXES: dict[tuple[str, str], str] = {
    ("neuroflash", "upstream_unavailable"): "Check NEUROFLASH_TOKEN_URL / NEUROFLASH_API_URL and the network; "
    "if they are right, neuroflash is down: try again later.",
    ("neuralsnap", "upstream_unavailable"): "Check NEURALSNAP_API_URL and the network; "
    "if they are right, NeuralSnap is down: try again later.",
    ("neuroflash", "not_found"): "Check NEUROFLASH_TOKEN_URL / NEUROFLASH_API_URL: they point at the wrong place.",
    ("neuralsnap", "not_found"): "Check NEURALSNAP_API_URL: it must end in /api/v1.",
    ("neuroflash", "rate_limited"): "Wait for the rate-limit window to reset, then run the check again.",
    ("neuralsnap", "rate_limited"): "The key's hourly limit is spent: wait for the reset, then run the check again.",
}


def failed(report: Report, service: str, item: str, exc: FlashsnapError) -> None:
    fix = FIXES.get((service, exc.code), exc.hint or None)
    report.add(service, item, "fail", exc.message, fix, {"code": exc.code})


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(1, minutes)} min"


def when(timestamp: float | None) -> str:
    return "unknown" if timestamp is None else datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def render(report: Report) -> str:
    """A table a person reads: one line per check, the fix indented under it."""
    rows = [(MARKS[f.status], f.service, f.item, f.detail, f.fix) for f in report.findings]
    widths = [max(len(row[i] or "") for row in rows) for i in range(3)]
    lines = []
    for mark, service, item, detail, fix in rows:
        lines.append(f"{mark:<{widths[0]}}  {service:<{widths[1]}}  {item:<{widths[2]}}  {detail}")
        if fix:
            lines.append(f"{'':<{widths[0] + widths[1] + widths[2] + 6}}fix: {fix}")
    verdict = "everything configured works" if report.ok else "something needs fixing (see FAIL above)"
    if not any(f.service in ("neuroflash", "neuralsnap") and f.status != "skip" for f in report.findings):
        verdict = "no service is configured"
    return "\n".join([*lines, "", f"flashsnap-mcp {__version__}: {verdict}"])
