"""What a window document read from the store may hold: strict types, then every time and count clamped.

The store is shared with every process that can write to it (the SQLite directory, any client of the
Redis keyspace), so a window document is read as untrusted input. A field of the wrong type makes the
whole document read as a fresh window; a figure out of bounds is clamped or forgotten, so a planted
document can hold calls no longer than the bounds below, and never lets out more sends than the limit:

- a reset, a 429's penalty or a waiting call's ticket at most `MAX_WINDOW_S` ahead (else forgotten);
- fair queuing's virtual time within 0..`MAX_VIRTUAL`, a ticket's start tag at most `MAX_TAG_LEAD` past it; a
  principal sending at most `ACTIVE_S` ahead, its weight within `MIN_WEIGHT`..`MAX_WEIGHT`;
- a send in flight at most `MAX_FLIGHT_S` ahead; a learnt burst at most `burst.LEARNT_FOR_S`;
- counts at most `MAX_COUNT`, the budget left at most the limit, times of past sends at most now;
- a budget left with no reset known and nothing in flight lasts a window past the last send (a day at most).

The same rules run inside the store's script (`gate_script.py`), which tests hold to these.
"""

from __future__ import annotations

import math
from typing import Any

from server.httpio import MAX_WINDOW_S

MAX_COUNT = 1_000_000  # no upstream's window allows more sends than this
MAX_FLIGHT_S = 600.0  # a send is reserved at most this long ahead (the longest request timeout and a margin)
TICKET_GRACE_S = 2.0  # a waiting call's ticket outlives its next look at the gate by this much
MAX_TICKET_S = MAX_WINDOW_S + TICKET_GRACE_S  # a ticket's next look is at most a window away
RECENT_KEPT = 64  # sends of the last burst period kept at most
REPORTS_KEPT = 16  # buckets' last reports kept at most
MAX_VIRTUAL = 1e12  # fair queuing's virtual time at most (it grows by 1/weight a send: never reached)
MAX_TAG_LEAD = 1e6  # a waiting call's start tag at most this far past the virtual time
ACTIVE_S = 0.25  # a principal that sent within this long is still sending: a call with a larger tag waits for it
MIN_WEIGHT, MAX_WEIGHT = 0.001, 1000.0  # a principal's weight, as a window document may hold it


class Malformed(ValueError):
    """A field of a stored window has the wrong type."""


def absent(doc: dict[str, Any], name: str) -> bool:
    return doc.get(name) is None


def number(value: object) -> float:
    """A finite JSON number (never a boolean or a string).

    Raises:
        Malformed: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Malformed("not a number")
    return float(value)


def count(value: object) -> int:
    """A whole JSON number.

    Raises:
        Malformed: anything else.
    """
    found = number(value)
    if found != math.floor(found):
        raise Malformed("not a whole number")
    return int(found)


def text(value: object) -> str:
    """A JSON string.

    Raises:
        Malformed: anything else.
    """
    if not isinstance(value, str):
        raise Malformed("not a string")
    return value


def mapping(value: object) -> dict[str, Any]:
    """A JSON object; absent or empty (`null`, `{}`, `[]`) reads as empty.

    Raises:
        Malformed: anything else.
    """
    if value is None or value == [] or value == {}:
        return {}
    if not isinstance(value, dict):
        raise Malformed("not an object")
    return value


def sequence(value: object) -> list[Any]:
    """A JSON array; absent or empty reads as empty.

    Raises:
        Malformed: anything else.
    """
    if value is None or value == [] or value == {}:
        return []
    if not isinstance(value, list):
        raise Malformed("not an array")
    return value


def clamp_virtual(value: float) -> float:
    """Fair queuing's virtual time, within 0..MAX_VIRTUAL (a planted one can only reorder waiting calls)."""
    return min(max(0.0, value), MAX_VIRTUAL)


def clamp_tag(tag: float, virtual: float) -> float:
    """A waiting call's start tag at most MAX_TAG_LEAD past the virtual time: a planted tag cannot push its
    principal's next calls behind everyone's for ever."""
    return min(tag, virtual + MAX_TAG_LEAD)


def clamp_count(value: int) -> int:
    return min(max(0, value), MAX_COUNT)
