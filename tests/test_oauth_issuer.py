"""An issuer that answers badly costs a 401 and one clear warning, never a crash, a hang or a memory spike."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.auth.issuer import MAX_DOCUMENT_BYTES, Issuer, metadata_urls
from server.auth.jwt import JWTVerifier
from server.clock import FakeClock
from server.sandbox.loopback import LoopbackServer
from tests.authorization_server import AuthorizationServer
from tests.servers import free_port

RESOURCE = "http://127.0.0.1:9/mcp"
KEY = {"kty": "RSA", "kid": "k1", "n": "sXch", "e": "AQAB"}

# Each case: what the issuer's metadata and key set answer, and the words of the warning that says so.
Answer = Callable[[str], Response]
CASES: dict[str, tuple[Answer, Answer, str]] = {
    "no metadata anywhere": (lambda i: Response(status_code=404), lambda i: JSONResponse({}), "no authorization"),
    "metadata of a server in trouble": (lambda i: Response("oops", 500), lambda i: JSONResponse({}), "no author"),
    "metadata that is not JSON": (lambda i: Response("<html>"), lambda i: JSONResponse({}), "no authorization"),
    "metadata naming another issuer": (
        lambda i: JSONResponse({"issuer": "https://evil.example", "jwks_uri": f"{i}/jwks"}),
        lambda i: JSONResponse({"keys": [KEY]}),
        "names issuer 'https://evil.example'",
    ),
    "metadata without jwks_uri": (lambda i: JSONResponse({"issuer": i}), lambda i: JSONResponse({}), "no jwks_uri"),
    "a key set too large": (
        lambda i: JSONResponse({"issuer": i, "jwks_uri": f"{i}/jwks"}),
        lambda i: Response(b"{" + b" " * (MAX_DOCUMENT_BYTES + 1) + b"}", media_type="application/json"),
        f"more than {MAX_DOCUMENT_BYTES} bytes",
    ),
    "a key set that is not one": (
        lambda i: JSONResponse({"issuer": i, "jwks_uri": f"{i}/jwks"}),
        lambda i: JSONResponse({"keys": "k1"}),
        "holds no key set",
    ),
}


def hostile(metadata: Answer, jwks: Answer) -> tuple[LoopbackServer, str]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"

    async def answer_metadata(_: Request) -> Response:
        return metadata(issuer)

    async def answer_jwks(_: Request) -> Response:
        return jwks(issuer)

    routes = [Route(path, answer_metadata) for path in ("/.well-known/oauth-authorization-server",
                                                         "/.well-known/openid-configuration")]  # fmt: skip
    app = Starlette(routes=[*routes, Route("/jwks", answer_jwks)])
    return LoopbackServer(app, port=port), issuer


@pytest.mark.parametrize("case", list(CASES))
async def test_an_issuer_that_answers_badly_costs_a_401_and_says_why(
    authorization_server: AuthorizationServer, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    metadata, jwks, said = CASES[case]
    server, issuer_url = hostile(metadata, jwks)
    clock = FakeClock(start=time.time())
    token = authorization_server.token("machine", RESOURCE)  # a good token of another server, kid and all
    with server, caplog.at_level(logging.WARNING, logger="server.auth.issuer"):
        verifier = JWTVerifier(Issuer(issuer_url, clock=clock), audience=RESOURCE, clock=clock)
        assert await verifier.verify_token(token) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert said in warnings[0]
    assert token not in warnings[0]


async def test_an_issuer_that_cannot_be_reached_costs_a_401(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    issuer = Issuer(f"http://127.0.0.1:{free_port()}", clock=clock)  # nothing listens there
    header = json.dumps({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}).encode()
    token = base64.urlsafe_b64encode(header).rstrip(b"=").decode() + ".e30.c2ln"
    with caplog.at_level(logging.WARNING, logger="server.auth.issuer"):
        assert await JWTVerifier(issuer, audience=RESOURCE, clock=clock).verify_token(token) is None
    assert "ConnectError" in caplog.text


@pytest.mark.parametrize(
    ("issuer", "urls"),
    [
        ("https://id.example.com", ["https://id.example.com/.well-known/oauth-authorization-server",
                                    "https://id.example.com/.well-known/openid-configuration"]),
        ("https://tenant.auth0.com/", ["https://tenant.auth0.com/.well-known/oauth-authorization-server",
                                       "https://tenant.auth0.com/.well-known/openid-configuration"]),
        ("https://kc.example.com/realms/team", ["https://kc.example.com/.well-known/oauth-authorization-server/realms/team",
                                                "https://kc.example.com/realms/team/.well-known/openid-configuration",
                                                "https://kc.example.com/.well-known/openid-configuration/realms/team"]),
    ],
)  # fmt: skip
def test_metadata_is_looked_for_as_rfc_8414_then_openid_discovery_place_it(issuer: str, urls: list[str]) -> None:
    assert metadata_urls(issuer) == urls
