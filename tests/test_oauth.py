"""OAuth 2.1 resource server: a real authorization server (oidc-provider) issues the tokens, real clients present
them over Streamable HTTP, and the emulator shows what reached the upstream (and that no client token did)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthToken

from server.auth import resource, scopes
from server.auth.issuer import Issuer
from server.auth.jwt import LEEWAY_S, JWTVerifier
from server.clock import FakeClock
from server.config import Settings
from server.errors import ConfigurationError
from server.sandbox import Emulator
from server.transports.http import build_http_app
from tests.authorization_server import CLIENT_SECRET, INITIALIZE, AuthorizationServer, Memory, Served, serving
from tests.transports import settings

MODES = ["auto", "legacy"]


@asynccontextmanager
async def oauth_client(url: str, auth: httpx2.Auth, mode: str) -> AsyncIterator[Client]:
    transport = streamable_http_client(url, http_client=httpx2.AsyncClient(auth=auth, timeout=30))
    async with Client(transport, mode=mode) as client:
        yield client


# --- without a token: where to get one ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/mcp", "/metrics"])
def test_a_request_without_a_token_is_told_where_to_get_one(served: Served, path: str) -> None:
    answer = served.post(None, path)
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    port = served.url.split(":")[2].split("/")[0]
    assert f'resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert 'scope="flashsnap:read flashsnap:write flashsnap:spend"' in challenge
    assert "error=" not in challenge  # no token sent: no error code (RFC 6750 §3.1)
    assert httpx2.get(served.url.removesuffix("/mcp") + "/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("public_url", "document"),
    [
        ("https://mcp.example.com/mcp", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"),
        ("https://mcp.example.com", "https://mcp.example.com/.well-known/oauth-protected-resource"),
        ("https://mcp.example.com/", "https://mcp.example.com/.well-known/oauth-protected-resource"),
        ("https://example.com/team/mcp/", "https://example.com/.well-known/oauth-protected-resource/team/mcp"),
        ("https://example.com:8443/mcp", "https://example.com:8443/.well-known/oauth-protected-resource/mcp"),
    ],
)
def test_the_metadata_lives_where_rfc_9728_puts_it(public_url: str, document: str) -> None:
    """The well-known name goes between the host and the resource's path (RFC 9728 §3.1)."""
    assert resource.metadata_url(public_url) == document
    assert f'resource_metadata="{document}"' in resource.challenge(public_url)


def test_the_sse_transport_asks_for_a_token_too(authorization_server: AuthorizationServer) -> None:
    with serving(authorization_server, transport="sse") as served:
        base = served.url.removesuffix("/mcp")
        refused = httpx2.get(f"{base}/sse", timeout=10)
        assert refused.status_code == 401
        assert "resource_metadata=" in refused.headers["www-authenticate"]
        token = served.auth.token("machine", served.url)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx2.stream("GET", f"{base}/sse", headers=headers, timeout=10) as stream:
            assert stream.status_code == 200


def test_oauth_stands_in_for_the_static_token_off_loopback(authorization_server: AuthorizationServer) -> None:
    """Off loopback (here a documentation address, never bound) the server refuses to start without a credential
    every request must carry: an access token of the issuer is one."""
    with Emulator() as emulator:
        exposed = settings(emulator, transport="streamable-http", host="192.0.2.10")
        with pytest.raises(ConfigurationError, match="FLASHSNAP_HTTP_TOKEN"):
            build_http_app(exposed)
        oauth = {
            "auth": "oauth",
            "oauth_issuer": authorization_server.issuer,
            "public_url": "https://mcp.example.com/mcp",
        }
        build_http_app(settings(emulator, transport="streamable-http", host="192.0.2.10", **oauth))


def test_the_metadata_names_the_public_url_the_issuer_and_every_scope(served: Served) -> None:
    base = served.url.removesuffix("/mcp")
    answer = httpx2.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=10)  # no token needed
    assert answer.status_code == 200
    document = answer.json()
    assert document["resource"] == served.url
    assert document["authorization_servers"] == [served.issuer]
    assert document["scopes_supported"] == list(scopes.ALL)
    assert document["bearer_methods_supported"] == ["header"]


# --- a real client, a real token: the call goes through -----------------------------------------------------


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
@pytest.mark.parametrize("mode", MODES)
async def test_a_client_credentials_client_calls_a_tool(
    authorization_server: AuthorizationServer, mode: str, stateless: bool
) -> None:
    storage = Memory()
    with serving(authorization_server, stateless=stateless) as served:
        provider = ClientCredentialsOAuthProvider(
            served.url, storage, "machine", CLIENT_SECRET, scope="flashsnap:read flashsnap:spend", issuer=served.issuer
        )
        async with oauth_client(served.url, provider, mode) as client:
            result = await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 50})
    assert result.is_error is False, result
    assert served.emulator.state.count("chat") == 1
    assert storage.tokens is not None
    issued = jwt.decode(storage.tokens.access_token, options={"verify_signature": False})
    assert issued["aud"] == served.url  # the SDK named this server as the resource (RFC 8707)
    # The client's token stops here: the upstream saw only this server's own credentials.
    assert served.emulator.credentials
    assert served.emulator.foreign_credentials() == []


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
@pytest.mark.parametrize("mode", MODES)
async def test_a_token_without_the_tools_scope_steps_up_and_the_call_then_runs_once(
    authorization_server: AuthorizationServer, mode: str, stateless: bool
) -> None:
    """A read-only token calling `generate` gets HTTP 403 `insufficient_scope` naming `flashsnap:spend`; the SDK's
    client asks the authorization server for the union of its scopes and the challenged one, replays, and the one
    generation runs. Nothing reached the upstream on the refused attempt."""
    storage = Memory()
    with serving(authorization_server, stateless=stateless) as served:
        # The client holds a read-only grant from earlier (a first sign-in asks for every scope the 401 names).
        granted = authorization_server.token("machine", served.url, scope=scopes.READ)
        storage.tokens = OAuthToken(access_token=granted, token_type="Bearer", expires_in=600, scope=scopes.READ)
        provider = ClientCredentialsOAuthProvider(
            served.url, storage, "machine", CLIENT_SECRET, scope=scopes.READ, issuer=served.issuer
        )
        async with oauth_client(served.url, provider, mode) as client:
            result = await client.call_tool("generate", {"model": "gpt-4.1-mini", "prompt": "Hi", "max_tokens": 50})
            listed = await client.list_tools()  # the first grant is kept: reading still works after the step-up
    assert result.is_error is False, result
    assert served.emulator.state.count("chat") == 1
    assert storage.tokens is not None
    assert set((storage.tokens.scope or "").split()) == {scopes.READ, scopes.SPEND}
    assert "generate" in {tool.name for tool in listed.tools}


def test_accepted_token_shapes(served: Served) -> None:
    """RFC 9068 tokens signed with RS256 and ES256, and the plain `JWT` Keycloak and Entra issue."""
    for client in ("machine", "machine-es256", "plain-jwt"):
        answer = served.post(served.auth.token(client, served.url))
        assert answer.status_code == 200, (client, answer.text)


def test_a_session_belongs_to_the_principal_that_opened_it(served: Served) -> None:
    owner, other = served.auth.token("machine", served.url), served.auth.token("machine-es256", served.url)
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    opened = httpx2.post(served.url, json=INITIALIZE, headers={**headers, "Authorization": f"Bearer {owner}"})
    session = opened.headers["mcp-session-id"]
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    mine = {**headers, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    assert httpx2.post(served.url, json=ping, headers={**mine, "Authorization": f"Bearer {owner}"}).status_code == 200
    taken = httpx2.post(served.url, json=ping, headers={**mine, "Authorization": f"Bearer {other}"})
    assert taken.status_code == 404  # another principal's session id names no session of theirs


# --- every bad token: 401, and nothing upstream ---------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return (json.loads(base64.urlsafe_b64decode(header + "==")), json.loads(base64.urlsafe_b64decode(payload + "==")))


def _forged(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _good(s: Served) -> str:
    return s.auth.token("machine", s.url)


def _alg_none(s: Served) -> str:
    header, payload = _parts(_good(s))
    return _forged({**header, "alg": "none"}, payload, lambda _: b"")


def _hs256_with_the_public_key(s: Served) -> str:
    """The confusion attack: HMAC keyed with the issuer's public key (PEM), which anyone can fetch."""
    header, payload = _parts(_good(s))
    keys = httpx2.get(f"{s.issuer}/jwks", timeout=10).json()["keys"]
    public = jwt.PyJWK(next(k for k in keys if k["kid"] == header["kid"])).key
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _forged({**header, "alg": "HS256"}, payload, lambda data: hmac.new(pem, data, hashlib.sha256).digest())


def _attacker_key(s: Served, kid: str | None) -> str:
    header, payload = _parts(_good(s))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(payload, key, algorithm="RS256", headers={"typ": "at+jwt", "kid": kid or header["kid"]})


def _tampered(s: Served) -> str:
    header, payload, signature = _good(s).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return f"{header}.{_b64(json.dumps({**claims, 'sub': 'admin'}).encode())}.{signature}"


CASES: dict[str, Callable[[Served], str]] = {
    "garbage": lambda s: "not-a-token",
    "three empty parts": lambda s: "..",
    "not base64": lambda s: "e30.***.e30",
    "too long": lambda s: "x" * 20_000,
    "alg none": _alg_none,
    "alg as a list": lambda s: _forged({"alg": ["RS256"], "kid": "k"}, {}, lambda _: b"sig"),
    "header not an object": lambda s: f"{_b64(b'[1]')}.{_b64(b'{}')}.{_b64(b'sig')}",
    "typ as an object": lambda s: _forged({"alg": "RS256", "kid": "k", "typ": {}}, {}, lambda _: b"sig"),
    "HS256 signed with the public key": _hs256_with_the_public_key,
    "another key under the issuer's kid": lambda s: _attacker_key(s, None),
    "unknown kid after a refresh": lambda s: _attacker_key(s, "attacker-key"),
    "a changed claim": _tampered,
    "for another resource": lambda s: s.auth.token("machine", "http://127.0.0.1:1/another-mcp"),
    "of another issuer": lambda s: s.auth.token("other-issuer", s.url),
    "an ID token": lambda s: s.auth.id_token(),
    "an ID token's shape (nonce)": lambda s: s.auth.token("plain-jwt-nonce", s.url),
    "a plain JWT without client_id": lambda s: s.auth.token("plain-jwt-no-client", s.url),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_bad_token_is_refused(served: Served, case: str) -> None:
    answer = served.post(CASES[case](served))
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token", resource_metadata="')
    assert answer.json()["error"] == "invalid_token"
    assert sum(served.emulator.state.requests.values()) == 0


@pytest.mark.parametrize(
    ("case", "shift"),
    [
        ("expired", 600 + LEEWAY_S + 1),  # the server's tokens live 600 s
        ("not yet valid", -(LEEWAY_S + 5)),  # issued "later" than this server's now
    ],
)
def test_a_token_out_of_its_time_is_refused(served: Served, case: str, shift: float) -> None:
    token = _good(served)
    assert served.post(token).status_code == 200  # the same token, in its time
    served.clock.advance(shift)
    answer = served.post(token)
    assert answer.status_code == 401, case


# --- the issuer's keys: discovered, cached, refetched for a new kid at most once per cooldown ----------------------


async def test_unknown_kids_refetch_the_keys_at_most_once_per_cooldown(
    authorization_server: AuthorizationServer,
) -> None:
    auth = authorization_server
    clock = FakeClock(start=time.time())  # the authorization server's tokens carry the real time
    resource = "http://127.0.0.1:9/mcp"
    issuer = Issuer(auth.issuer, clock=clock, refresh_cooldown_s=60)
    verifier = JWTVerifier(issuer, audience=resource, clock=clock)
    good = auth.token("machine", resource)
    accepted = await verifier.verify_token(good)
    assert accepted is not None
    assert accepted.subject == "machine"
    assert accepted.issuer == auth.issuer
    assert issuer.fetches == 1
    header, payload = _parts(good)
    forged = [_forged({**header, "kid": f"new-{n}"}, payload, lambda _: b"sig") for n in range(3)]
    assert await verifier.verify_token(forged[0]) is None
    assert await verifier.verify_token(forged[1]) is None
    assert issuer.fetches == 1  # within the cooldown: made-up kids cost the authorization server nothing
    assert await verifier.verify_token(good) is not None  # a known kid never waits on a fetch
    clock.advance(61)
    assert await verifier.verify_token(forged[2]) is None
    assert issuer.fetches == 2


# --- the settings: a resource server is told its own URL, and takes https:// off loopback ---------------------------


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"FLASHSNAP_OAUTH_ISSUER": "http://id.example.com", "FLASHSNAP_PUBLIC_URL": "https://mcp.example.com/mcp"},
         "FLASHSNAP_OAUTH_ISSUER: .*https://"),
        ({"FLASHSNAP_OAUTH_ISSUER": "https://id.example.com", "FLASHSNAP_PUBLIC_URL": "mcp.example.com/mcp"},
         "FLASHSNAP_PUBLIC_URL: .*http:// or https://"),
        ({"FLASHSNAP_OAUTH_ISSUER": "https://id.example.com", "FLASHSNAP_PUBLIC_URL": "https://mcp.example.com/mcp#x"},
         "FLASHSNAP_PUBLIC_URL: .*fragment"),
    ],
)  # fmt: skip
def test_oauth_settings_that_cannot_work_stop_the_start(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        Settings.from_env(environ)


def test_the_audience_defaults_to_the_public_url_and_may_be_an_identifier() -> None:
    base = {"FLASHSNAP_OAUTH_ISSUER": "https://id.example.com/", "FLASHSNAP_PUBLIC_URL": "https://mcp.example.com/mcp"}
    assert Settings.from_env(base).audience == "https://mcp.example.com/mcp"
    entra = Settings.from_env({**base, "FLASHSNAP_OAUTH_AUDIENCE": "api://flashsnap"})
    assert entra.audience == "api://flashsnap"
    plain = Settings.from_env({**base, "FLASHSNAP_OAUTH_AUDIENCE": "7f3c0c1e-1d2b-4c55-9a61-2f1f3b5d8e90"})
    assert plain.audience == "7f3c0c1e-1d2b-4c55-9a61-2f1f3b5d8e90"
