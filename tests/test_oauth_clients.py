"""OAuth clients as users run them, end to end against a real authorization server: the Python SDK's browser flow
(authorization code with PKCE, the client registering itself) and `mcp-remote` as a desktop host's stdio bridge."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import jwt
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import OAuthClientMetadata
from pydantic import AnyUrl

from tests.authorization_server import CLIENT_SECRET, SCOPES, Browser, Memory, Served
from tests.npm import MODULES, NODE, NODE_DIR
from tests.servers import free_port
from tests.test_oauth import MODES, oauth_client
from tests.test_stdio import params

GENERATE = {"model": "gpt-4.1-mini", "prompt": "Hello", "max_tokens": 50}


@pytest.mark.parametrize("mode", MODES)
async def test_a_person_signs_in_through_the_browser_and_calls_a_tool(served: Served, mode: str) -> None:
    redirect = "http://127.0.0.1:1/callback"  # the browser stops there: nothing needs to listen
    browser, storage = Browser(redirect), Memory()
    provider = OAuthClientProvider(
        served.url,
        OAuthClientMetadata(
            client_name="flashsnap test client",
            redirect_uris=[AnyUrl(redirect)],
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method="none",
            scope=SCOPES,
        ),
        storage,
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )
    async with oauth_client(served.url, provider, mode) as client:
        listed = await client.list_tools()
        result = await client.call_tool("generate", GENERATE)
    assert "generate" in {tool.name for tool in listed.tools}
    assert result.is_error is False, result
    assert browser.visits == 1  # one sign-in for the whole session
    assert served.emulator.state.count("chat") == 1
    assert storage.tokens is not None
    assert storage.client is not None  # it registered itself (RFC 7591), as MCP clients do
    claims = jwt.decode(storage.tokens.access_token, options={"verify_signature": False})
    assert (claims["sub"], claims["aud"], claims["client_id"]) == ("alice", served.url, storage.client.client_id)
    assert set(claims["scope"].split()) == set(SCOPES.split())
    assert served.emulator.foreign_credentials() == []


# The browser mcp-remote opens (its opener honours $BROWSER): follows the sign-in through to mcp-remote's callback.
BROWSER = """#!/bin/sh
echo "$1" >> "$0.visits"
exec {python} -c 'import sys, httpx2; httpx2.Client(follow_redirects=True, timeout=30).get(sys.argv[1])' "$1"
"""


@pytest.mark.parametrize("flow", ["client credentials", "browser"])
async def test_mcp_remote_bridges_a_stdio_host(served: Served, tmp_path: Path, flow: str) -> None:
    """`mcp-remote URL` as a stdio server, the way hosts without remote OAuth connect: a job with client credentials,
    or a person signing in through the browser it opens."""
    proxy = MODULES / "mcp-remote" / "dist" / "proxy.js"
    env = {**(params().env or {}), "MCP_REMOTE_CONFIG_DIR": str(tmp_path / "mcp-auth")}
    if flow == "client credentials":
        client_info = json.dumps({"client_id": "machine", "client_secret": "${FLASHSNAP_TEST_SECRET}"})
        args = [served.url, "--client-credentials", "--static-oauth-client-info", client_info]
        env["FLASHSNAP_TEST_SECRET"] = CLIENT_SECRET
    else:
        browser = tmp_path / "browser"
        browser.write_text(BROWSER.format(python=sys.executable))
        browser.chmod(0o755)
        args = [served.url, str(free_port())]  # its callback listens there
        env |= {"BROWSER": str(browser), "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    bridge = StdioServerParameters(command=str(NODE), args=[str(proxy), *args], env=env)
    with anyio.fail_after(120):
        async with Client(bridge, mode="legacy") as client:
            result = await client.call_tool("generate", GENERATE)
    assert result.is_error is False, result
    assert served.emulator.state.count("chat") == 1
    assert served.emulator.credentials
    assert served.emulator.foreign_credentials() == []
    if flow == "browser":  # one sign-in, at this server's authorization server
        visits = (tmp_path / "browser.visits").read_text().splitlines()
        assert len(visits) == 1
        assert visits[0].startswith(f"{served.issuer}/auth?")


def test_the_readme_names_the_versions_the_tests_pin() -> None:
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    readme = (NODE_DIR.parent.parent / "README.md").read_text()
    assert f"`oidc-provider` {pinned['oidc-provider']}" in readme
    assert f"`mcp-remote` {pinned['mcp-remote']}" in readme
