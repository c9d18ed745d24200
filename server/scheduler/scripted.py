"""The gate's steps as store scripts: each pure step paired with the same rules in Lua (`window.lua`).

A store that runs scripts (Redis, Valkey) takes each decision in one round trip, atomically, with no
compare-and-set retries; any other store runs the pure step (`admit.decide`, `settle.settle`, ...) in its
own atomic update. The script is given the time and the step's arguments as the pure step has them, so
both reach the same answer on the same document (tests/scheduler/test_window_script.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from server.httpio import plausible_rate_limit
from server.scheduler.admit import Asker, AwaitAnswers, Decision, Moved, Send, Wait, decide
from server.scheduler.settle import Answer, settle
from server.scheduler.window import WINDOW_TTL_S, Window, forget_ticket, renew_flights, seed_limit
from server.state.store import Change, Doc, Scripted

Now = Callable[[], float]


@cache
def source() -> str:
    """The Lua of every step, loaded by the store once and called by its SHA."""
    return resources.files("server.scheduler").joinpath("window.lua").read_text(encoding="utf-8")


def deciding(now: Now, asker: Asker) -> Scripted[tuple[Decision, Window]]:
    """`admit.decide` for `asker` at the time `now()` gives when it runs."""
    args = {**dataclasses.asdict(asker), "inherited": list(asker.inherited)}
    return Scripted(
        lambda doc: decide(doc, now(), asker), source(), "decide", lambda: (now(), args),
        lambda r, d, at: (decision_of(r), Window.load(d, at)), WINDOW_TTL_S,
    )  # fmt: skip


def settling(now: Now, answer: Answer) -> Scripted[Window]:
    """`settle.settle` of `answer` at the time `now()` gives when it runs."""

    def args() -> tuple[float, Doc]:
        at = now()
        seen = plausible_rate_limit(answer.limit, answer.remaining, answer.reset, at)
        fields = dataclasses.asdict(answer)
        fields.update(informative=answer.informative, limit=seen.limit, remaining=seen.remaining,
                      reset_at=seen.reset_at)  # fmt: skip
        return at, fields

    return Scripted(lambda doc: settle(doc, now(), answer), source(), "settle", args,
                    lambda r, d, at: Window.load(d, at), WINDOW_TTL_S)  # fmt: skip


def renewing(now: Now, reservations: set[str], lease_s: float) -> Scripted[None]:
    """`window.renew_flights`: this process's sends in flight reserved for `lease_s` more seconds."""

    def pure(doc: Doc | None) -> Change[None]:
        at = now()
        return renew_flights(doc, at, reservations, at + lease_s)

    def args() -> tuple[float, Doc]:
        at = now()
        return at, {"reservations": sorted(reservations), "until": at + lease_s}

    return Scripted(pure, source(), "renew", args, lambda r, d, at: None, WINDOW_TTL_S)


def forgetting(now: Now, ticket: str) -> Scripted[None]:
    """`window.forget_ticket`: a call that stopped waiting takes its ticket back."""
    return Scripted(lambda doc: forget_ticket(doc, now(), ticket), source(), "forget",
                    lambda: (now(), {"ticket": ticket}), lambda r, d, at: None, WINDOW_TTL_S)  # fmt: skip


def seeding(now: Now, limit: int) -> Scripted[Window]:
    """`window.seed_limit`, answering with the window after it."""

    def pure(doc: Doc | None) -> Change[Window]:
        at = now()
        change = seed_limit(doc, at, limit)
        return Change(Window.load(change.doc if isinstance(change.doc, dict) else doc, at), change.doc, change.ttl_s)

    return Scripted(pure, source(), "seed", lambda: (now(), {"limit": limit}),
                    lambda r, d, at: Window.load(d, at), WINDOW_TTL_S)  # fmt: skip


def decision_of(reply: Any) -> Decision:
    """A decision as the script answers it."""
    kind = reply["k"]
    if kind == "send":
        return Send(bool(reply["tracked"]), in_period=int(reply["in_period"]), in_second=int(reply["in_second"]))
    if kind == "wait":
        return Wait(float(reply["s"]), str(reply["why"]), advisory=bool(reply["advisory"]))
    if kind == "await":
        return AwaitAnswers(str(reply["why"]))
    return Moved()
