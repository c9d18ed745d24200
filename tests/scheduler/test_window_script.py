"""The store's script (`window.lua`) and the pure steps agree on generated window documents, planted ones included.

Each example writes one document to a real Valkey, runs one step both ways at one instant (the pure step on
the document as Python reads it; the script inside Valkey through `RedisStore`'s own arguments), and compares
the result, whether the document was written, and what was written, exactly (floats to the last bit).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.scheduler import scripted
from server.scheduler.admit import Asker, Decision, Send
from server.scheduler.settle import Answer
from server.scheduler.window import Window
from server.state.redis import RedisStore, script_argv
from server.state.store import KEEP, Change, Doc, Scripted, decode
from tests.servers import Valkey

NOW = 1_780_000_000.0
KEY = "test:window"
IDS = ["me", "a", "b", "r"]
BUCKETS = ["GET /a", "POST /b", ""]
PRINCIPALS = ["alice", "bob", "session:ab12", ""]
EXAMPLES = 150  # batches per step
BATCH = 20  # documents per batch: 3,000 per step, 9,000 in all


@pytest.fixture(scope="module")
def valkey_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    server = Valkey(Path(tmp_path_factory.mktemp("valkey"))).start()
    try:
        client = redis.Redis(port=server.port, decode_responses=True)
        yield client
        client.close()
    finally:
        server.stop()


# --- documents as the gate writes them, and as a store writer might plant them ---------------------------
# Drawn from a seeded `random.Random` that Hypothesis hands each example (a failure names its seed): far
# cheaper per document than nested strategies, so a batch of 20 costs about what one drawn field did.


def time(r: random.Random) -> float:
    pick = r.randrange(6)
    if pick == 0:
        return r.choice([NOW, NOW - 1.05, NOW + 0.5, 0.0, NOW + 2.0])
    if pick == 1:
        return NOW + r.uniform(-1e7, 1e7)
    return NOW + r.uniform(-300, 300)


def count(r: random.Random) -> int:
    return r.choice([r.randint(-3, 40), r.choice([10, 30, 60, 120, 300, 2_000_000])])


def maybe(r: random.Random, value: Callable[[random.Random], Any]) -> Any:
    return None if r.randrange(4) == 0 else value(r)


def some(r: random.Random, keys: list[str], value: Callable[[random.Random], Any], most: int) -> dict[str, Any]:
    return {r.choice(keys): value(r) for _ in range(r.randint(0, most))}


def tag(r: random.Random) -> float:
    """A start tag: whole turns, thirds (weight 3), ties, and far past any virtual time."""
    return r.choice([r.randint(0, 8), r.randint(0, 24) / 3, r.uniform(0, 10), 1e7, -1.0])


def active(r: random.Random) -> list[Any]:
    """A principal that sent a moment ago: its last tag, its weight (planted ones out of bounds too), until when."""
    until = r.choice([NOW + 0.1, NOW + 0.25, NOW - 0.1, NOW + 100.0, time(r)])
    return [tag(r), r.choice([1.0, 3.0, 0.5, 0.0001, 5000.0]), until]


def ticket(r: random.Random) -> list[Any]:
    return [time(r), time(r), tag(r), r.choice(PRINCIPALS)]


def report(r: random.Random) -> dict[str, Any] | list[Any]:
    """As kept (`[remaining, reset_at, limit, answers_at]`), or as kept before (an object naming them)."""
    found = [count(r), time(r), maybe(r, count), r.randint(0, 20)]
    if r.randrange(3):
        return found
    return {"bucket": r.choice(BUCKETS), "remaining": found[0], "reset_at": found[1], "limit": found[2],
            "answers_at": found[3]}  # fmt: skip


def recent(r: random.Random) -> dict[str, list[float]] | list[list[Any]]:
    """As kept (each bucket's times under its name), or as kept before (`[time, bucket]` pairs)."""
    if r.randrange(10) == 0:  # more than the 64 kept
        start = NOW - r.random()
        pairs = [(start - i / 50, BUCKETS[i % 3]) for i in range(70)]
    else:
        pairs = [(NOW + r.uniform(-2, 0.5), r.choice(BUCKETS)) for _ in range(r.randint(0, 6))]
    if r.randrange(3) == 0:
        return [list(p) for p in pairs]
    grouped: dict[str, list[float]] = {}
    for t, bucket in pairs:
        grouped.setdefault(bucket, []).append(t)
    return grouped


FIELDS: dict[str, Callable[[random.Random], Any]] = {
    "limit": lambda r: maybe(r, count),
    "remaining": lambda r: maybe(r, count),
    "reset_at": lambda r: maybe(r, time),
    "blocked_until": lambda r: r.choice([0.0, time(r)]),
    "window_s": lambda r: r.choice([None, 1.0, 2.0, 5.0, 10.0, 60.0, 3600.0, 0.0, 1e6, r.uniform(0.1, 120)]),
    "answered": lambda r: r.randint(0, 5),
    "sent": count,
    "last_send": lambda r: maybe(r, time),
    "flights": lambda r: some(r, IDS, time, 4),
    "waiting": lambda r: some(r, IDS, ticket, 4),
    "virtual": lambda r: r.choice([0.0, 1.0, tag(r), -5.0, 2e12]),
    "active": lambda r: some(r, PRINCIPALS, active, 3),
    "burst": lambda r: maybe(r, lambda r: r.randint(-1, 12)),
    "burst_until": lambda r: r.choice([0.0, time(r)]),
    "safe": lambda r: r.randint(0, 12),
    "recent": recent,
    "answers": lambda r: r.randint(0, 20),
    "reports": lambda r: some(r, BUCKETS, report, 3),
    "separate": lambda r: some(r, BUCKETS[:2], time, 1),
    "sent_by": lambda r: some(r, BUCKETS, lambda r: r.randint(0, 30), 3),
    "windows": lambda r: r.randint(-1, 4),
}
BAD: list[Any] = ["x", True, 1.5, [], {"k": 1}, float("inf"), [1.0], None, {"me": [1.0, 2.0]}, {"me": [1, 2, 3, 4]}]


def document(r: random.Random) -> Doc | None:
    """None, a document of any subset of the fields, sometimes one field of the wrong type."""
    if r.randrange(30) == 0:
        return None
    doc = {name: value(r) for name, value in FIELDS.items() if r.randrange(6)}
    if r.randrange(12) == 0:
        doc[r.choice(sorted(FIELDS))] = r.choice(BAD)
    return doc


def asker(r: random.Random) -> Asker:
    return Asker(
        r.choice(IDS), r.choice([NOW, NOW + r.uniform(-300, 300)]), probe_first=r.random() < 0.5,
        paced=r.random() < 0.5, queued_here=r.randint(0, 30), flight_ttl_s=r.choice([6.0, 70.0, 2_000.0]),
        pace_below=r.choice([0.1, 0.5, 1.0]), own_window=r.random() < 0.5, bucket=r.choice(BUCKETS),
        inherited=tuple(NOW - r.uniform(0, 2) for _ in range(r.randint(0, 4))),
        principal=r.choice(PRINCIPALS), weight=r.choice([1.0, 3.0, 0.5, 1000.0, 0.001]),
    )  # fmt: skip


def answer(r: random.Random) -> Answer:
    reset = r.choice([None, r.randint(1, 120), int(NOW) + r.randint(-5, 200)])
    return Answer(
        r.choice(IDS), tracked=r.random() < 0.5, answered=r.random() < 0.8, sent=r.random() < 0.5,
        limit=maybe(r, count), remaining=maybe(r, count), reset=reset,
        throttled_for=r.choice([None, r.uniform(0, 100)]), status=r.choice([None, 200, 429, 500]),
        bucket=r.choice([None, *BUCKETS]), in_period=r.randint(0, 12), in_second=r.randint(0, 12),
        answers_at_send=r.randint(0, 20),
    )  # fmt: skip


# --- running one step both ways --------------------------------------------------------------------------


def normal(doc: Doc) -> Doc:
    parsed: Doc = json.loads(json.dumps(doc))
    return parsed


def both(db: redis.Redis, cases: list[tuple[Doc | None, Scripted[Any]]]) -> list[tuple[Change[Any], dict[str, Any]]]:
    """For each case, the pure step's change, and the script's reply with what it left in the store (a batch
    goes to Valkey in two pipelined round trips, so thousands of documents take seconds)."""
    sha = db.script_load(scripted.source())
    keys = [f"{KEY}:{i}" for i in range(len(cases))]
    with db.pipeline(transaction=False) as pipe:
        for key, (doc, _) in zip(keys, cases, strict=True):
            pipe.delete(key)
            if doc is not None:
                pipe.set(key, json.dumps({"v": 1, "d": doc}))
        pipe.execute()
    changes = [mutate.pure(None if doc is None else decode(json.dumps({"v": 1, "d": doc}))) for doc, mutate in cases]
    with db.pipeline(transaction=False) as pipe:
        for key, (_, mutate) in zip(keys, cases, strict=True):
            pipe.evalsha(sha, 1, key, *script_argv(mutate, "test:wake")[1])
            pipe.get(key)
        found = pipe.execute()
    replies = []
    for i in range(len(cases)):
        reply = json.loads(found[2 * i])
        reply["stored"] = decode(found[2 * i + 1])
        replies.append(reply)
    return list(zip(changes, replies, strict=True))


def same_writes(change: Change[Any], reply: dict[str, Any], doc: Doc | None) -> None:
    wrote = change.doc is not KEEP
    assert reply["w"] == int(wrote)
    if wrote:
        assert isinstance(change.doc, dict)
        assert reply["stored"] == normal(change.doc)
    else:
        assert reply["stored"] == (None if doc is None else decode(json.dumps({"v": 1, "d": doc})))


def settings_() -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


def batches(*parts: Callable[[random.Random], Any]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    return st.randoms(use_true_random=True).map(lambda r: [tuple(part(r) for part in parts) for _ in range(BATCH)])


@settings_()
@given(cases=batches(document, asker, lambda r: r.choice([0.0, 0.001, 1.0, 7.5])))
def test_a_decision_is_the_same_in_the_store_as_in_the_pure_steps(
    valkey_db: redis.Redis, cases: list[tuple[Doc | None, Asker, float]]
) -> None:
    mutations = [(doc, scripted.deciding(partial(float.__add__, NOW, later), asker)) for doc, asker, later in cases]
    for (doc, _), (change, reply) in zip(mutations, both(valkey_db, mutations), strict=True):
        decision: Decision
        decision, window = change.result
        assert scripted.decision_of(reply["r"]) == decision
        assert getattr(decision, "in_period", 0) == reply["r"].get("in_period", 0)
        assert getattr(decision, "in_second", 0) == reply["r"].get("in_second", 0)
        assert reply["d"] == normal(window.dump())
        same_writes(change, reply, doc)


@settings_()
@given(cases=batches(document, answer))
def test_an_answer_is_settled_the_same_in_the_store_as_in_the_pure_steps(
    valkey_db: redis.Redis, cases: list[tuple[Doc | None, Answer]]
) -> None:
    mutations = [(doc, scripted.settling(lambda: NOW, answer)) for doc, answer in cases]
    for (doc, _), (change, reply) in zip(mutations, both(valkey_db, mutations), strict=True):
        assert reply["d"] == normal(change.result.dump())
        same_writes(change, reply, doc)


def small_step(step: str, who: str, limit: int) -> Scripted[Any]:
    if step == "renew":
        return scripted.renewing(lambda: NOW, {who, "r"}, 6.0)
    if step == "forget":
        return scripted.forgetting(lambda: NOW, who)
    return scripted.seeding(lambda: NOW, limit)


@settings_()
@given(cases=batches(document, lambda r: r.choice(["renew", "forget", "seed"]), lambda r: r.choice(IDS),
                     lambda r: r.randint(-1, 50)))  # fmt: skip
def test_renewals_tickets_and_seeds_are_the_same_in_the_store_as_in_the_pure_steps(
    valkey_db: redis.Redis, cases: list[tuple[Doc | None, str, str, int]]
) -> None:
    mutations = [(doc, small_step(step, who, limit)) for doc, step, who, limit in cases]
    for (doc, _), (change, reply) in zip(mutations, both(valkey_db, mutations), strict=True):
        if isinstance(change.result, Window):
            assert Window.load(reply["d"], NOW) == change.result
        same_writes(change, reply, doc)


@pytest.mark.anyio
async def test_a_decision_is_one_script_call_however_many_processes_contend(valkey_db: redis.Redis) -> None:
    """Eight stores (processes) reserve 40 sends on one window at once: 40 script calls, no retries, no reads
    beside them; inside them one GET and one SET each (a send reserved wakes nobody: no PUBLISH)."""
    port = valkey_db.connection_pool.connection_kwargs["port"]
    valkey_db.delete("p:v1:gate:x")
    stores = [RedisStore(f"redis://127.0.0.1:{port}/0", prefix="p:") for _ in range(8)]
    await stores[0].update("gate:x", scripted.seeding(lambda: NOW, 1_000))
    valkey_db.config_resetstat()
    sends: list[Decision] = []

    async def ask(store: RedisStore, n: int) -> None:
        for i in range(5):
            me = Asker(f"{n}-{i}", NOW, probe_first=False, paced=False, queued_here=0, flight_ttl_s=6.0)
            decision, _ = await store.update("gate:x", scripted.deciding(lambda: NOW, me))
            sends.append(decision)

    async with anyio.create_task_group() as tg:
        for n, store in enumerate(stores):
            tg.start_soon(ask, store, n)
    stats = {name.removeprefix("cmdstat_"): found["calls"] for name, found in valkey_db.info("commandstats").items()}
    assert len(sends) == 40
    assert all(isinstance(decision, Send) and decision.tracked for decision in sends)
    connecting = ("info", "config|resetstat", "hello", "client|setinfo")  # each store's first connection
    assert {k: v for k, v in stats.items() if k not in connecting} == {
        "evalsha": 40, "get": 40, "set": 40,
    }  # fmt: skip
    window = Window.load(decode(valkey_db.get("p:v1:gate:x")), NOW)
    assert (window.limit, window.sent, window.in_flight) == (1_000, 40, 40)
    # A Valkey restarted or flushed forgets its scripts: the next call loads the script again and goes on.
    valkey_db.script_flush()
    last = Asker("last", NOW, probe_first=False, paced=False, queued_here=0, flight_ttl_s=6.0)
    assert isinstance((await stores[3].update("gate:x", scripted.deciding(lambda: NOW, last)))[0], Send)
    for store in stores:
        await store.aclose()
