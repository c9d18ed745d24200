"""Several upstream accounts in one deployment, over real HTTP in tokens mode: each principal spends its own
account's words and rate budget, the audit log names the account, a principal with nowhere to spend is refused
with 403 before anything is sent, and a wrong `[accounts]` table stops the start, naming the problem."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from server.auth.reloading import POLL_S
from server.cli import status
from server.cli.check import run_checks
from server.cli.findings import render
from server.clock import FakeClock
from server.config import Settings
from server.errors import ConfigurationError
from server.runtime import open_runtime
from server.sandbox import Emulator, EmulatorState
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from server.transports.identity import FORBIDDEN
from tests.conftest import NO_QUESTIONS
from tests.results import data, error
from tests.test_team import GENERATE, as_, entry, upstream_requests
from tests.transports import http_client

MKT = {"MKT_NEUROFLASH_CLIENT_ID": "mkt-client", "MKT_NEUROFLASH_CLIENT_SECRET": "mkt-secret-0123456789",
       "MKT_NEURALSNAP_API_KEY": "ns_test_marketing_key_0123"}  # fmt: skip
SALES = {"id": "sales-client", "secret": "sales-secret-0123456789", "key": "ns_test_sales_key_0123"}
PRIVATE_KEY = "ns_test_private_key_0123"
CREDENTIALS = ("NEUROFLASH_CLIENT_ID", "NEUROFLASH_CLIENT_SECRET", "NEURALSNAP_API_KEY")
SNAP = {"name": "Accounts", "core": "Each team spends its own.", "max_wait_s": 0}

Serve = Callable[..., AbstractAsyncContextManager[str]]


def accounts_table(secrets: Path) -> str:
    """marketing reads its credentials from variables, sales from files (both forms, one test)."""
    return (
        "[accounts.marketing]\n"
        'neuroflash_client_id_env = "MKT_NEUROFLASH_CLIENT_ID"\n'
        'neuroflash_client_secret_env = "MKT_NEUROFLASH_CLIENT_SECRET"\n'
        'neuralsnap_api_key_env = "MKT_NEURALSNAP_API_KEY"\n'
        "[accounts.sales]\n"
        f'neuroflash_client_id_file = "{secrets / "sales-id"}"\n'
        f'neuroflash_client_secret_file = "{secrets / "sales-secret"}"\n'
        f'neuralsnap_api_key_file = "{secrets / "sales-key"}"\n'
        "[accounts.private]\n"
        'neuralsnap_api_key_env = "PRIVATE_NEURALSNAP_API_KEY"\n'
    )


@pytest.fixture
def team_file(tmp_path: Path, state: EmulatorState, monkeypatch: pytest.MonkeyPatch) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in (("sales-id", SALES["id"]), ("sales-secret", SALES["secret"]), ("sales-key", SALES["key"])):
        (secrets / name).write_text(value + "\n")
    for name, value in {**MKT, "PRIVATE_NEURALSNAP_API_KEY": PRIVATE_KEY}.items():
        monkeypatch.setenv(name, value)
    with state.lock:  # the emulator knows both accounts' credentials, beside its demo ones
        state.clients |= {
            MKT["MKT_NEUROFLASH_CLIENT_ID"]: MKT["MKT_NEUROFLASH_CLIENT_SECRET"],
            SALES["id"]: SALES["secret"],
        }
        state.api_keys |= {MKT["MKT_NEURALSNAP_API_KEY"]: "brain-marketing", SALES["key"]: "brain-sales"}
        state.api_keys[PRIVATE_KEY] = "brain-private"
    path = tmp_path / "team.toml"
    team = (
        '[defaults]\nscopes = ["flashsnap:read", "flashsnap:write", "flashsnap:spend"]\n'
        + accounts_table(secrets)
        + entry("alice", account="marketing")
        + entry("dan", account="sales")
        + entry("carol")  # no account: the environment's, when it has one
        + entry("writer", account="private")  # a NeuralSnap key of their own, and no neuroflash
    )
    path.write_text(team)
    return path


@pytest.fixture
def serve(emulator: Emulator, clock: FakeClock, team_file: Path, tmp_path: Path) -> Serve:
    """`async with serve(default=True) as url`: tokens mode with the team's accounts; `default`: the environment
    gives a default account too (the emulator's demo credentials)."""

    @asynccontextmanager
    async def serving(*, default: bool = True, **overrides: Any) -> AsyncIterator[str]:
        environ = {**NO_QUESTIONS, **emulator.environment(), "FLASHSNAP_TOOLSETS": "all"}
        if not default:
            environ = {k: v for k, v in environ.items() if k not in CREDENTIALS}
        settings = Settings.from_env(
            environ, transport="streamable-http", auth="tokens", team_file=team_file,
            audit_log=tmp_path / "audit.jsonl", audit_key="k" * 32, **overrides,
        )  # fmt: skip
        with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server:
            yield server.url

    return serving


@asynccontextmanager
async def client_as(url: str, name: str) -> AsyncIterator[Any]:
    async with http_client(url, "auto", http=as_(name)) as client:
        yield client


def read(path: Path) -> str:
    return path.read_text()


def write(path: Path, text: str) -> None:
    path.write_text(text)


def audit(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


async def test_each_principal_spends_its_own_accounts_words(serve: Serve, state: EmulatorState, tmp_path: Path) -> None:
    async with serve() as url:
        async with client_as(url, "alice") as alice:
            data(await alice.call_tool("generate", GENERATE))
        after_alice = dict(state.words_by_client)
        async with client_as(url, "dan") as dan:
            data(await dan.call_tool("generate", GENERATE))
        async with client_as(url, "carol") as carol:
            data(await carol.call_tool("generate", GENERATE))
    assert after_alice.get("mkt-client", 0) > 0
    assert after_alice.get(SALES["id"], 0) == 0
    assert after_alice.get("sandbox-client", 0) == 0
    assert state.words_by_client[SALES["id"]] == after_alice["mkt-client"]  # the same prompt, the same words
    assert state.words_by_client["sandbox-client"] == after_alice["mkt-client"]  # carol: the default account
    assert state.words_by_client["mkt-client"] == after_alice["mkt-client"]  # nobody else spent marketing's
    calls = [r for r in audit(tmp_path) if r["tool"] == "generate"]
    assert [(r["principal"], r["account"], r["outcome"]) for r in calls][:2] == [
        ("alice", "marketing", "ok"),
        ("dan", "sales", "ok"),
    ]
    assert calls[2]["principal"] == "carol"
    assert calls[2]["account"] not in (None, "marketing", "sales")
    text = (tmp_path / "audit.jsonl").read_text()
    for secret in (*MKT.values(), *SALES.values()):
        assert secret not in text or secret in ("mkt-client", SALES["id"])  # client ids are not secrets
    assert "mkt-secret" not in text
    assert SALES["secret"] not in text


async def test_an_account_added_to_the_team_file_while_it_runs_is_opened_for_whom_it_routes(
    serve: Serve, team_file: Path, state: EmulatorState, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = read(team_file)
    sales = whole[whole.index("[accounts.sales]") : whole.index("[accounts.private]")]
    dan = entry("dan", account="sales")
    write(team_file, whole.replace(sales, "").replace(dan, ""))  # the team as it started: no sales yet
    monkeypatch.setenv("BROKEN_NEURALSNAP_API_KEY", "")
    broken = '[accounts.broken]\nneuralsnap_api_key_env = "BROKEN_NEURALSNAP_API_KEY"\n'
    async with serve() as url:
        async with client_as(url, "alice") as alice:
            data(await alice.call_tool("generate", GENERATE))
        write(team_file, broken + whole + entry("spender", account="broken"))  # sales and dan, and a bad account
        clock.advance(POLL_S)  # the change is seen on the next use
        async with client_as(url, "dan") as dan_client:
            data(await dan_client.call_tool("generate", GENERATE))
            data(await dan_client.call_tool("snapshot", SNAP))
        async with client_as(url, "spender") as spender:
            missing = error(await spender.call_tool("snapshot", SNAP))
    assert state.words_by_client[SALES["id"]] == state.words_by_client["mkt-client"]  # dan spent sales' words
    assert state.rate_window(SALES["key"]).used == 1
    assert [s["brain_id"] for s in state.snapshots.values()] == ["brain-sales"]
    assert missing["code"] == "missing_credential"  # its variable is blank: it stays closed, the call says so
    assert "account broken" in missing["message"]


async def test_an_account_of_one_upstream_serves_it_and_names_itself_for_the_other(
    serve: Serve, state: EmulatorState
) -> None:
    async with serve() as url, client_as(url, "writer") as writer:
        data(await writer.call_tool("snapshot", SNAP))
        tokens_before = state.count("token")
        missing = error(await writer.call_tool("generate", GENERATE))
    assert state.rate_window(PRIVATE_KEY).used == 1  # the snapshot went to the person's own key
    assert [s["brain_id"] for s in state.snapshots.values()] == ["brain-private"]
    assert missing["code"] == "missing_credential"
    assert "account private" in missing["message"]
    assert "[accounts.private]" in missing["message"]
    assert state.count("token") == tokens_before  # nothing was asked of neuroflash for it
    assert state.words_charged == 0


async def test_a_429_on_one_account_delays_no_call_of_the_other(
    serve: Serve, state: EmulatorState, clock: FakeClock, tmp_path: Path
) -> None:
    state.set_rate_limit(5, 3600)
    marketing = state.rate_window(MKT["MKT_NEURALSNAP_API_KEY"])
    with state.lock:
        marketing.used = 5  # marketing's hour is spent elsewhere: its next request gets a 429
    async with serve() as url:
        async with client_as(url, "alice") as alice:
            limited = error(await alice.call_tool("snapshot", SNAP))
        assert state.count_status("snapshot_create", 429) == 1
        started = clock.now()
        async with client_as(url, "dan") as dan:
            made = [data(await dan.call_tool("snapshot", {**SNAP, "name": f"s{n}"})) for n in range(3)]
    assert limited["code"] == "rate_limited"
    assert len(made) == 3
    assert clock.now() == started  # sales waited for nothing
    assert state.count_status("snapshot_create", 429) == 1  # and met no 429
    assert state.rate_window(SALES["key"]).used == 3
    snaps = [r for r in audit(tmp_path) if r["tool"] == "snapshot"]
    assert [(r["account"], r["wait_s"]) for r in snaps if r["principal"] == "dan"] == [("sales", 0)] * 3
    assert [r["account"] for r in snaps if r["principal"] == "alice"] == ["marketing"]


@pytest.mark.parametrize(
    ("tool", "arguments"), [("generate", GENERATE), ("snapshot", SNAP), ("search_snapshots", {"query": "x"})]
)
async def test_a_principal_with_no_account_and_no_default_gets_403_and_nothing_is_sent(
    serve: Serve, state: EmulatorState, tmp_path: Path, tool: str, arguments: dict[str, Any]
) -> None:
    async with serve(default=False) as url:
        before = upstream_requests(state)
        async with client_as(url, "carol") as carol:
            with pytest.raises(MCPError) as refused:
                await carol.call_tool(tool, arguments)
            with pytest.raises(MCPError):
                await carol.read_resource("flashsnap://snapshots/recent")
        assert refused.value.error.code == FORBIDDEN
        assert "no upstream account" in refused.value.error.message
        assert upstream_requests(state) == before
        async with client_as(url, "alice") as alice:  # a routed principal is served as ever
            data(await alice.call_tool("generate", GENERATE))
    denied = [r for r in audit(tmp_path) if r["principal"] == "carol"]
    assert [r["outcome"] for r in denied] == ["denied", "denied"]


async def test_the_403_for_no_account_is_an_http_403(serve: Serve, state: EmulatorState) -> None:
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "generate", "arguments": GENERATE}}
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    async with serve(default=False, http_stateless=True) as url, as_("carol") as http:
        before = upstream_requests(state)
        answer = await http.post(f"{url}/mcp", json=call, headers=headers)
    assert answer.status_code == 403
    assert answer.json()["id"] == 9
    assert answer.json()["error"]["code"] == FORBIDDEN
    assert upstream_requests(state) == before


async def start(settings: Settings, clock: FakeClock) -> None:
    """What a start does with the team file: check it whole (building the app), then read each account."""
    build_http_app(settings, clock=clock)
    async with open_runtime(settings, clock):
        pass


GOOD = {"neuralsnap_api_key_env": "ACCT_KEY"}


@pytest.mark.parametrize(
    ("table", "environ", "named"),
    [
        ({"neuralsnap_api_key": "ns_test_inline"}, {}, "accounts.a.neuralsnap_api_key: unknown key"),
        ({"neuralsnap_api_key_env": "ns_test_x-y"}, {}, "must be an environment variable's name"),
        ({"neuralsnap_api_key_env": 3}, {}, "accounts.a.neuralsnap_api_key_env"),
        ({}, {}, "accounts.a: names no credential"),
        ({"neuroflash_client_id_env": "ACCT_ID"}, {}, "neuroflash needs both the client id and the client secret"),
        ({**GOOD, "neuralsnap_api_key_file": "/k"}, {}, "neuralsnap_api_key_env or neuralsnap_api_key_file, not both"),
        (GOOD, {}, "account a: neuralsnap_api_key: the variable ACCT_KEY is not set"),
        (GOOD, {"ACCT_KEY": "  "}, "account a: neuralsnap_api_key: the variable ACCT_KEY is not set"),
        (GOOD, {"ACCT_KEY": "sk_wrong_shape"}, "account a: the NeuralSnap API key in the variable ACCT_KEY does not"),
        ({"neuralsnap_api_key_file": "/nonexistent/key"}, {}, "the file /nonexistent/key cannot be read"),
        ({"neuralsnap_api_key_file": "{empty}"}, {}, "is empty"),
        ({"neuralsnap_api_key_file": "{two_lines}"}, {}, "holds more than one line"),
        (GOOD, {"ACCT_KEY": "ns_test_fine"}, "principals[0] (alice).account: no account 'b' (the accounts are a)"),
    ],
)
async def test_a_wrong_accounts_table_stops_the_start_naming_it(
    emulator: Emulator, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    table: dict[str, Any], environ: dict[str, str], named: str,
) -> None:  # fmt: skip
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "two_lines").write_text("ns_test_a\nns_test_b\n")
    lines = ["[accounts.a]"]
    for key, value in table.items():
        value = (
            value.format(empty=tmp_path / "empty", two_lines=tmp_path / "two_lines")
            if isinstance(value, str)
            else value
        )
        lines.append(f"{key} = {json.dumps(value)}")
    account = "b" if "no account 'b'" in named else "a"
    path = tmp_path / "team.toml"
    path.write_text("\n".join(lines) + "\n" + entry("alice", account=account))
    monkeypatch.delenv("ACCT_KEY", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env({**emulator.environment()}, transport="streamable-http", auth="tokens", team_file=path)
    with pytest.raises(ConfigurationError) as stopped:
        await start(settings, clock)
    assert named in str(stopped.value)
    for value in environ.values():
        if value.strip():
            assert value not in str(stopped.value)  # a credential's value is never quoted back


async def test_status_names_each_account_and_check_checks_each_without_spending(
    serve: Serve, state: EmulatorState, clock: FakeClock, team_file: Path, emulator: Emulator
) -> None:
    async with serve() as url, client_as(url, "alice") as alice:
        data(await alice.call_tool("generate", GENERATE))
    # `flashsnap-mcp status` opens the shared store as the servers do, with the team file's accounts' credentials
    urls = {k: v for k, v in emulator.environment().items() if k not in CREDENTIALS}  # no default credentials
    store = await status.open_shared(Settings.from_env(urls, team_file=team_file), clock, "status")
    assert store is not None
    try:
        view = await status.gather(store, clock)
    finally:
        await store.aclose()
    named = {(a["service"], a["name"]) for a in view["accounts"]}
    assert named >= {(s, n) for s in ("neuroflash", "neuralsnap") for n in ("default", "marketing", "sales")}
    marketing = next(a for a in view["accounts"] if (a["service"], a["name"]) == ("neuroflash", "marketing"))
    assert not marketing.get("sealed")  # its own secret opens its documents
    assert marketing["token"]["valid_until"]
    default = next(a for a in view["accounts"] if (a["service"], a["name"]) == ("neuroflash", "default"))
    assert default.get("sealed")  # the environment of this status holds no default credentials
    assert "account marketing" in status.render(view)
    assert "account sales" in status.render(view)

    spent = state.words_charged
    with state.lock:
        state.clients[SALES["id"]] = "a-secret-sales-no-longer-holds"  # sales' client secret was rotated upstream
    report = await run_checks(Settings.from_env(emulator.environment(), team_file=team_file), clock)
    found = {(f.service, f.item): f.status for f in report.findings}
    assert found[("neuroflash", "account marketing: token")] == "ok"
    assert found[("neuralsnap", "account marketing: api key")] == "ok"
    assert found[("neuralsnap", "account sales: api key")] == "ok"
    assert found[("neuroflash", "account sales: token")] == "fail"
    assert found[("neuroflash", "token")] == "ok"  # the environment's account, as before
    assert not report.ok
    assert state.words_charged == spent  # checking spends nothing
    shown = render(report)
    assert SALES["secret"] not in shown
    assert MKT["MKT_NEUROFLASH_CLIENT_SECRET"] not in shown
