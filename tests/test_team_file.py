"""The team file and the auth modes as an operator meets them: what stops the start (naming the problem), a
changed file used without a restart, a bad new one refused with the old kept, SIGHUP, and `team token`."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

import tools
from server.auth import modes, scopes
from server.auth.reloading import POLL_S
from server.auth.team import parse
from server.cli.main import main
from server.clock import FakeClock
from server.config import Settings
from server.errors import ConfigurationError
from server.sandbox import Emulator
from server.sandbox.loopback import LoopbackServer
from server.transports.http import build_http_app
from tests.conftest import NO_QUESTIONS
from tests.servers import free_port
from tests.test_readme_samples import README, mismatch, sample
from tests.test_stdio import COMMAND, params
from tests.test_team import TEAM, TOKENS, entry, sha

HEX = "a" * 64

# Each budget key, with each kind of bad value TOML can give it: negative, out of range, a string,
# a float, a boolean (strict: `true` is not 1); in an entry and in [defaults]. (The weight's: BAD_TEAM_FILES.)
BAD_BUDGET_VALUES = [("-1", "Input should be greater than or equal to 0"), ("'10'", "Input should be a valid integer"),
                     ("1.5", "Input should be a valid integer"), ("true", "Input should be a valid integer"),
                     ("10_000_000_000", "Input should be less than or equal to")]  # fmt: skip
BUDGET_KEYS = ("words_per_day", "words_per_month", "crystallize_tokens_per_month", "searches_per_month",
               "generations_in_flight")  # fmt: skip
BAD_BUDGETS = [
    *(
        (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\n{key} = {value}", f"principals[0] (al).{key}: {says}")
        for key in BUDGET_KEYS
        for value, says in BAD_BUDGET_VALUES
    ),
    *((f"[defaults]\n{key} = -5", f"defaults.{key}: Input should be greater") for key in BUDGET_KEYS),
    (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\nweight = 0", "(al).weight: Input should be greater"),
    (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\nwords_per_week = 5", "(al).words_per_week: unknown key"),
]

# (the file, what the refusal names): each kind of mistake an operator makes in it.
BAD_TEAM_FILES = [
    ("[[principals]\nname = 'x'", "not valid TOML"),
    ("teams = []", "teams: unknown key"),
    ("[defaults]\nscope = ['flashsnap:read']", "defaults.scope: unknown key"),
    ("[defaults]\nscopes = ['flashsnap:root']", "unknown scope 'flashsnap:root'"),
    (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\nrole = 'x'", "principals[0] (al).role: unknown key"),
    (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\nmatch = {{ subject = 'x' }}", "match.subject: unknown key"),
    (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\nscopes = ['flashsnap:everything']", "unknown scope"),
    (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\nscopes = 'flashsnap:read'", "scopes: Input should be"),
    (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\nconfirm_words = -1", "confirm_words"),
    (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\nconfirm_words = '10'", "confirm_words"),
    (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\nconfirm_delete = 'no'", "confirm_delete"),
    # weight: a number in (0, 1000], in [defaults] or an entry; TOML's inf and nan are numbers too
    *[
        (f"{table}\nweight = {value}", f"{where}weight")
        for table, where in [
            ("[defaults]", "defaults."),
            (f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'", "(al)."),
        ]
        for value in ["0", "-1", "0.0", "1001", "inf", "-inf", "nan", "'3'", "true", "[3]"]
    ],
    ("[[principals]]\nname = 'al'\ntoken_sha256 = 'not-a-hash'", "must be 64 hex digits"),
    (f"[[principals]]\nname = 'a l'\ntoken_sha256 = '{HEX}'", "principals[0] (a l).name: must be"),
    (f"[[principals]]\nname = 'other'\ntoken_sha256 = '{HEX}'", "'other' is kept"),
    (f"[[principals]]\ntoken_sha256 = '{HEX}'", "principals[0].name: Field required"),
    (
        f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\n"
        f"[[principals]]\nname = 'al'\ntoken_sha256 = '{'b' * 64}'",
        "principals[1] (al): the name 'al' is used twice",
    ),
    (
        f"[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\n[[principals]]\nname = 'bo'\ntoken_sha256 = '{HEX}'",
        "principals[1] (bo): token_sha256 is used twice",
    ),
    ("[[principals]]\nname = 'al'", "names nobody"),
    ("[[principals]]\nname = 'al'\nmatch = { sub = 'svc' }", "no principal has a token_sha256"),
    ("", "no principal has a token_sha256"),
]


@pytest.mark.parametrize(("text", "named"), BAD_TEAM_FILES)
def test_a_bad_team_file_stops_the_start_naming_the_problem(
    emulator: Emulator, tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "team.toml"
    path.write_text(text)
    settings = Settings.from_env(emulator.environment(), transport="streamable-http", auth="tokens", team_file=path)
    with pytest.raises(ConfigurationError) as refused:
        build_http_app(settings)
    assert named in refused.value.message
    assert str(path) in refused.value.message


@pytest.mark.parametrize(("text", "named"), BAD_BUDGETS)
def test_a_bad_budget_or_weight_stops_the_start_naming_the_key(
    emulator: Emulator, tmp_path: Path, text: str, named: str
) -> None:
    test_a_bad_team_file_stops_the_start_naming_the_problem(emulator, tmp_path, text, named)


@pytest.mark.parametrize(
    ("text", "named"), [BAD_TEAM_FILES[1], BAD_TEAM_FILES[3], BAD_TEAM_FILES[-5], ("", "no principal has")]
)
def test_the_command_refuses_to_start_with_a_bad_team_file(tmp_path: Path, text: str, named: str) -> None:
    """The real command: exit 2, the reason on stderr, before anything listens."""
    path = tmp_path / "team.toml"
    path.write_text(text)
    env = {**(params().env or {}), "FLASHSNAP_AUTH": "tokens", "FLASHSNAP_TEAM_FILE": str(path)}
    started = subprocess.run(
        [COMMAND, "--sandbox", "--transport", "streamable-http", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert named in started.stderr
    assert str(path) in started.stderr


def test_a_missing_team_file_stops_the_start(emulator: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    settings = Settings.from_env(emulator.environment(), transport="streamable-http", auth="tokens", team_file=path)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        build_http_app(settings)


# (settings, what the refusal names): every combination of FLASHSNAP_AUTH and the settings it needs or has no use for.
TOKEN = "t" * 20
BAD_COMBINATIONS: list[tuple[dict[str, Any], str]] = [
    ({"auth": "token"}, "FLASHSNAP_AUTH=token needs FLASHSNAP_HTTP_TOKEN"),
    ({"auth": "tokens"}, "FLASHSNAP_AUTH=tokens needs FLASHSNAP_TEAM_FILE"),
    ({"auth": "oauth"}, "FLASHSNAP_AUTH=oauth needs FLASHSNAP_OAUTH_ISSUER"),
    ({"auth": "oauth", "oauth_issuer": "https://id.example"}, "needs FLASHSNAP_PUBLIC_URL"),
    ({"auth": "none", "http_token": TOKEN}, "FLASHSNAP_HTTP_TOKEN has no use with FLASHSNAP_AUTH=none"),
    ({"auth": "tokens", "team_file": "t.toml", "http_token": TOKEN}, "FLASHSNAP_HTTP_TOKEN has no use"),
    ({"auth": "token", "http_token": TOKEN, "team_file": "t.toml"}, "FLASHSNAP_TEAM_FILE has no use"),
    ({"team_file": "t.toml"}, "FLASHSNAP_TEAM_FILE has no use with FLASHSNAP_AUTH=none"),
    ({"http_token": TOKEN, "team_file": "t.toml"}, "FLASHSNAP_TEAM_FILE has no use with FLASHSNAP_AUTH=token"),
    ({"oauth_issuer": "https://id.example"}, "FLASHSNAP_OAUTH_ISSUER has no use"),
    ({"public_url": "https://mcp.example/mcp"}, "FLASHSNAP_PUBLIC_URL has no use"),
    ({"auth": "tokens", "team_file": "t.toml", "oauth_issuer": "https://id.example"}, "FLASHSNAP_OAUTH_ISSUER"),
    (
        {"auth": "oauth", "oauth_issuer": "https://i.example", "public_url": "https://m.example", "http_token": TOKEN},
        "FLASHSNAP_HTTP_TOKEN has no use",
    ),
]


@pytest.mark.parametrize(("given", "named"), BAD_COMBINATIONS)
def test_a_combination_the_modes_table_does_not_allow_stops_the_start_with_the_fix(
    emulator: Emulator, given: dict[str, Any], named: str
) -> None:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http", **given)
    with pytest.raises(ConfigurationError) as refused:
        build_http_app(settings)
    assert named in refused.value.message


@pytest.mark.parametrize("variable", ["FLASHSNAP_OAUTH_ISSUER", "FLASHSNAP_PUBLIC_URL"])
@pytest.mark.parametrize("value", ["id.example.com", "ftp://id.example.com", "https://", "javascript:alert(1)"])
def test_the_oauth_urls_must_be_http_urls(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{variable}: .*http:// or https:// URL"):
        Settings.from_env({variable: value})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, "none"),
        ({"http_token": TOKEN}, "token"),
        ({"auth": "none"}, "none"),
        ({"auth": "token", "http_token": TOKEN}, "token"),
    ],
)
def test_unset_auth_is_token_with_a_token_else_none(given: dict[str, Any], expected: str) -> None:
    assert modes.mode(Settings.from_env({}, **given)) == expected


def test_none_off_loopback_is_refused_as_before(emulator: Emulator) -> None:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http", host="0.0.0.0", auth="none")  # noqa: S104
    with pytest.raises(ConfigurationError, match="FLASHSNAP_HTTP_TOKEN"):
        build_http_app(settings)


def test_none_on_loopback_serves_and_warns_that_every_local_user_can_call(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.from_env(emulator.environment(), transport="streamable-http")
    with caplog.at_level(logging.WARNING):
        build_http_app(settings)
    assert any("every local user" in record.getMessage() for record in caplog.records)


def test_check_warns_for_none_and_fails_a_bad_combination(tmp_path: Path) -> None:
    base = {**(params().env or {}), "FLASHSNAP_TRANSPORT": "streamable-http"}
    warned = subprocess.run([COMMAND, "check", "--sandbox"], env=base, capture_output=True, text=True, timeout=60)
    line = next(line for line in warned.stdout.splitlines() if " auth " in line)
    assert line.startswith("warn")
    assert "every local user" in line
    assert warned.returncode == 0  # a warning, not a failure
    bad = {**base, "FLASHSNAP_AUTH": "tokens"}
    failed = subprocess.run([COMMAND, "check", "--sandbox"], env=bad, capture_output=True, text=True, timeout=60)
    line = next(line for line in failed.stdout.splitlines() if " auth " in line)
    assert line.startswith("FAIL")
    assert "needs FLASHSNAP_TEAM_FILE" in line
    assert failed.returncode == 1
    path = tmp_path / "team.toml"
    path.write_text(TEAM)
    team = {**base, "FLASHSNAP_AUTH": "tokens", "FLASHSNAP_TEAM_FILE": str(path)}
    named = subprocess.run([COMMAND, "check", "--sandbox"], env=team, capture_output=True, text=True, timeout=60)
    line = next(line for line in named.stdout.splitlines() if " auth " in line)
    assert line.startswith("ok")
    assert "principals alice, dan, ops, reader, spender, writer" in line
    assert named.returncode == 0


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
MODERN_LIST = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/list",
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    },
}
MODERN_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/list",
}


@contextlib.contextmanager
def serving_team(emulator: Emulator, clock: FakeClock, path: Path) -> Iterator[LoopbackServer]:
    """flashsnap-mcp in tokens mode over stateless HTTP, reading the team file `path` (written with `TEAM` first)."""
    path.write_text(TEAM)
    environ = {**NO_QUESTIONS, **emulator.environment()}
    settings = Settings.from_env(
        environ, transport="streamable-http", auth="tokens", team_file=path, http_stateless=True
    )
    with LoopbackServer(build_http_app(settings, clock=clock), lifespan="on") as server:
        yield server


async def listed_as(http: httpx2.AsyncClient, url: str, name: str) -> int:
    answer = await http.post(f"{url}/mcp", json=MODERN_LIST, headers={**MODERN_HEADERS, **bearer(name)})
    return answer.status_code


async def test_a_changed_team_file_is_used_without_a_restart_and_a_bad_one_is_refused(
    emulator: Emulator, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "team.toml"
    with serving_team(emulator, clock, path) as server:
        async with httpx2.AsyncClient(timeout=30) as http:
            assert await listed_as(http, server.url, "carol") == 401
            path.write_text(TEAM + entry("carol"))  # carol joins; alice leaves below
            clock.advance(POLL_S)
            assert await listed_as(http, server.url, "carol") == 200
            assert await listed_as(http, server.url, "alice") == 200

            path.write_text(TEAM.replace(sha(TOKENS["alice"]), "b" * 64) + entry("carol"))
            clock.advance(POLL_S)
            assert await listed_as(http, server.url, "alice") == 401  # her old token no longer opens the door
            assert await listed_as(http, server.url, "carol") == 200

            with caplog.at_level(logging.WARNING):
                path.write_text(TEAM + entry("carol") + "\n[[principals]]\nname = 'carol'\n")  # a typo: a duplicate
                clock.advance(POLL_S)
                assert await listed_as(http, server.url, "carol") == 200  # the old file is kept
                assert await listed_as(http, server.url, "alice") == 401
    refusals = [r.getMessage() for r in caplog.records if "keeping the team file in use" in r.getMessage()]
    assert len(refusals) == 1  # said once, not on every request
    assert "carol" in refusals[0]
    assert "used twice" in refusals[0]


async def test_sighup_reloads_the_team_file(tmp_path: Path) -> None:
    """The real command: alice's entry gets carol's token hash in place (same size, same mtime, so only the
    signal can tell), SIGHUP, and carol's token opens the door where alice's no longer does."""
    path = tmp_path / "team.toml"
    path.write_text(TEAM)
    before = path.stat()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**(params().env or {}), "FLASHSNAP_AUTH": "tokens", "FLASHSNAP_TEAM_FILE": str(path),
           "FLASHSNAP_HTTP_STATELESS": "1"}  # fmt: skip
    command = [COMMAND, "--sandbox", "--transport", "streamable-http", "--port", str(port), "--log-level", "INFO"]
    async with await anyio.open_process(command, env=env, stdout=None) as process:
        assert process.stderr is not None
        log = Said(process.stderr)
        try:
            with anyio.fail_after(30):
                await log.until("serving streamable-http")
            async with httpx2.AsyncClient(timeout=30) as http:
                assert await listed_as(http, url, "carol") == 401
                path.write_text(TEAM.replace(sha(TOKENS["alice"]), sha(TOKENS["carol"])))
                os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
                assert path.stat().st_size == before.st_size
                assert await listed_as(http, url, "carol") == 401  # unseen: the file looks unchanged
                process.send_signal(signal.SIGHUP)
                with anyio.fail_after(10):
                    await log.until("reloaded")
                assert await listed_as(http, url, "carol") == 200
                assert await listed_as(http, url, "alice") == 401
        finally:
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()


class Said:
    """What a process writes to a stream, read as it comes: `until(text)` returns once `text` appears anew."""

    def __init__(self, stream: anyio.abc.ByteReceiveStream) -> None:
        self.stream = stream
        self.text = ""
        self.seen = 0

    async def until(self, text: str) -> None:
        while (found := self.text.find(text, self.seen)) < 0:
            self.text += (await self.stream.receive()).decode(errors="replace")
        self.seen = found + len(text)


def test_team_token_prints_a_token_and_the_line_that_lets_it_in(tmp_path: Path) -> None:
    printed = subprocess.run([COMMAND, "team", "token", "dana"], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0
    lines = printed.stdout.splitlines()
    token = next(line for line in lines if line.startswith("#   ")).removeprefix("#   ")
    toml = "\n".join(line for line in lines if not line.startswith("#"))
    assert f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"' in toml
    assert len(token) >= 43
    from server.auth.team import parse

    team = parse(toml)
    assert team.by_token_hash()[hashlib.sha256(token.encode()).hexdigest()].name == "dana"


def team_token(name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str]:
    """`flashsnap-mcp team token NAME` run by the command's own `main`, in this process: (exit code, stdout).

    The test above runs the installed command; these are about what it prints and refuses, which a fresh
    interpreter (half a second of imports each) does not change.
    """
    code: int | str | None = 0
    try:
        main(["team", "token", name])
    except SystemExit as exited:
        code = exited.code
    return code, capsys.readouterr().out


@pytest.mark.parametrize("name", ["a b", "other", "", "x" * 65, 'q"uote'])
def test_team_token_refuses_a_name_the_team_file_would_refuse(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout = team_token(name, capsys)
    assert code == 2
    assert stdout == ""


def test_the_readme_sample_of_team_token_is_what_it_prints(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout = team_token("alice", capsys)
    assert code == 0
    assert mismatch(sample("flashsnap-mcp team token alice"), stdout) is None


def test_the_readme_team_file_is_a_valid_team_file() -> None:
    """The README's example is what the server reads: its principals, their policies and thresholds."""
    text = README.read_text().split("### The team file", 1)[1]
    team = parse(text.split("```toml\n", 1)[1].split("```", 1)[0])
    assert [p.name for p in team.principals] == ["alice", "ci-bot"]
    alice, bot = team.principals
    assert alice.policy == frozenset(scopes.CALLING)
    assert bot.policy == {scopes.READ}
    assert dict(bot.match) == {"sub": "svc-ci"}
    assert (bot.confirm_words, bot.confirm_delete) == (0, False)
    assert (alice.weight, bot.weight) == (1.0, 3.0)  # an entry's weight, else 1


@pytest.mark.parametrize(
    ("defaults", "entry", "expected"),
    [("", "", 1.0), ("weight = 2", "", 2.0), ("weight = 2", "weight = 0.5", 0.5), ("", "weight = 1000", 1000.0)],
)
def test_a_principals_weight_is_its_own_else_the_defaults_else_1(defaults: str, entry: str, expected: float) -> None:
    team = parse(f"[defaults]\n{defaults}\n[[principals]]\nname = 'al'\ntoken_sha256 = '{HEX}'\n{entry}\n")
    assert team.principals[0].weight == expected
    assert team.default_weight == (2.0 if defaults else 1.0)  # a caller the file does not name


def test_the_readme_scope_table_is_each_tools_declared_scope() -> None:
    text = README.read_text().split("### Scopes per tool", 1)[1].split("\n\n", 3)[2]
    rows = [line.split("|")[1:3] for line in text.splitlines() if line.startswith("| `flashsnap:")]
    listed = {name: scope.strip(" `") for scope, tools_ in rows for name in re.findall(r"`([a-z_]+)`", tools_)}
    assert listed == {spec.name: spec.scope for spec in tools.ALL}


@pytest.mark.parametrize(("text", "named"), BAD_TEAM_FILES)
async def test_a_bad_new_team_file_is_refused_and_the_one_in_use_kept(
    emulator: Emulator, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, named: str
) -> None:
    path = tmp_path / "team.toml"
    with serving_team(emulator, clock, path) as server:
        async with httpx2.AsyncClient(timeout=30) as http:
            path.write_text(text)
            clock.advance(POLL_S)
            with caplog.at_level(logging.WARNING):
                assert await listed_as(http, server.url, "alice") == 200
                assert await listed_as(http, server.url, "reader") == 200
    refusals = [r.getMessage() for r in caplog.records if "keeping the team file in use" in r.getMessage()]
    assert len(refusals) == 1
    assert named in refusals[0]
