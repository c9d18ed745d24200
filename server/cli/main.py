"""The `flashsnap-mcp` command: options, logging to stderr, sandbox wiring and the transport."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import uvicorn

from server import __version__
from server.app import create_app, tool_selection
from server.auth import modes
from server.cli.audit import main as audit
from server.cli.check import main as check
from server.cli.forget import main as forget
from server.cli.sandboxing import sandbox_environment
from server.cli.status import main as status
from server.cli.team import main as team
from server.clock import SystemClock
from server.config import ENVIRONMENT, Settings
from server.errors import ConfigurationError
from server.observe import logs, otel_logs, tracing
from server.runtime import open_state
from server.transports.draining import CUT_ANSWER_S, DrainingServer
from server.transports.http import build_http_app
from server.transports.limits import uvicorn_options
from server.transports.stdio import serve_stdio

log = logging.getLogger("server")

EPILOG = "environment variables:\n" + "\n".join(f"  {var:<38} {text}" for var, _, text in ENVIRONMENT)
EPILOG += """

flashsnap-mcp status [--watch] [--json] shows what the servers sharing the state store know;
flashsnap-mcp forget {neuroflash,neuralsnap,all} [--yes] deletes what they learned (tokens, rate limits, quotas).
flashsnap-mcp team token NAME prints a new token for NAME and the token_sha256 line for the team file.
Logs go to stderr; in stdio mode stdout carries nothing but MCP messages.
--sandbox needs no account: it serves a local emulator of both APIs with demo data. Its world
(snapshots, words used, tokens, rate-limit windows) is kept in the state directory and shared by
every --sandbox process (FLASHSNAP_STATE=memory keeps it in the process); --sandbox-reset forgets it.
FLASHSNAP_SANDBOX_PROFILE=name[,name...] picks which reading of the vendors' disagreeing pages it serves.
`flashsnap-mcp check [--sandbox] [--json]` tries every configured service and says what to fix.
`flashsnap-mcp audit verify PATH...` checks the audit log's keyed chain (FLASHSNAP_AUDIT_LOG)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="flashsnap-mcp",
        description="An MCP server for neuroflash (AI writing) and NeuralSnap (second brain).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="serve a built-in emulator of both APIs on loopback with demo credentials, "
        "so every tool works with no account (upstream variables are ignored)",
    )
    parser.add_argument(
        "--sandbox-reset",
        action="store_true",
        help="start the sandbox's world afresh: forget its snapshots, words used, tokens and rate-limit "
        "windows (implies --sandbox)",
    )
    parser.add_argument(
        "--transport",
        choices=["stdio", "sse", "streamable-http"],
        help="how MCP clients connect (default: stdio, or FLASHSNAP_TRANSPORT)",
    )
    parser.add_argument("--host", help="address for the HTTP transports (default: 127.0.0.1, or FLASHSNAP_HOST)")
    parser.add_argument("--port", type=int, help="port for the HTTP transports (default: 8000, or FLASHSNAP_PORT)")
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log verbosity (default: INFO)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="HTTP worker processes on this host, sharing the state store (default: 1, or FLASHSNAP_WORKERS)",
    )
    parser.add_argument(
        "--toolsets",
        help="toolsets to offer, comma-separated: neuroflash, brand, twins, neuralsnap, neuralsnap-write, "
        "default, all (default: default, or FLASHSNAP_TOOLSETS)",
    )
    parser.add_argument("--tools", help="only these tools, comma-separated (or FLASHSNAP_TOOLS)")
    parser.add_argument("--exclude-tools", help="turn these tools off, comma-separated (or FLASHSNAP_EXCLUDE_TOOLS)")
    parser.add_argument(
        "--read-only", action="store_true", default=None, help="only tools that change nothing (or FLASHSNAP_READ_ONLY)"
    )
    parser.add_argument("--version", action="version", version=f"flashsnap-mcp {__version__}")
    args = parser.parse_args(argv)
    args.sandbox = args.sandbox or args.sandbox_reset
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run `flashsnap-mcp` (or its `status`, `forget`, `check`, `audit` subcommands) with `argv` (default: sys.argv).

    Raises:
        SystemExit: 2 when the configuration is unusable (the reason on stderr); the subcommands exit with theirs.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:
        status(argv[1:])
        return
    if argv[:1] == ["forget"]:
        forget(argv[1:])
        return
    if argv[:1] == ["team"]:  # `flashsnap-mcp team token NAME`: a named token and its hash (server/cli/team.py)
        team(argv[1:])
        return
    if argv[:1] == ["audit"]:  # `flashsnap-mcp audit verify PATH…`: the audit log's chain (server/cli/audit.py)
        audit(argv[1:])
        return
    if argv[:1] == ["check"]:  # `flashsnap-mcp check`: the setup check, its own command (server/cli/check.py)
        check(argv[1:])
        return
    args = parse_args(argv)
    overrides = {
        "transport": args.transport,
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "workers": args.workers,
        "toolsets": args.toolsets,
        "tools": args.tools,
        "exclude_tools": args.exclude_tools,
        "read_only": args.read_only,
    }
    logs.configure(args.log_level or os.environ.get("FLASHSNAP_LOG_LEVEL", "INFO").upper())
    try:
        with contextlib.ExitStack() as stack:
            environ: Mapping[str, str] = os.environ
            if args.sandbox:
                environ = stack.enter_context(sandbox_environment(os.environ, reset=args.sandbox_reset))
            settings = Settings.from_env(environ, sandbox=args.sandbox, **overrides)
            logs.configure(settings.log_level, settings.secrets)
            tracing.configure(os.environ)
            otel_logs.configure(os.environ)
            preflight(settings)
            tool_selection(settings)  # unknown tool names stop the start, before any worker is forked
            if settings.workers > 1 and settings.transport != "stdio":
                serve_workers(settings, environ)
            else:
                serve(settings)
    except ConfigurationError as exc:
        print(f"flashsnap-mcp: {exc}", file=sys.stderr)  # noqa: T201 - a start-up error for a person
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


def preflight(settings: Settings) -> None:
    """Refuse to start when the HTTP auth mode's settings or team file are wrong, or a Redis store was asked for
    and does not answer (naming the host, never a password)."""
    if settings.transport == "stdio":
        if settings.auth is not None or settings.team_file is not None:
            log.warning("FLASHSNAP_AUTH and FLASHSNAP_TEAM_FILE apply to HTTP only; over stdio the caller is you")
    else:
        modes.verifier_for(settings, modes.open_team(settings, SystemClock()), SystemClock())
    if settings.store != "redis":
        return

    async def reach() -> None:
        store = await open_state(settings, SystemClock())
        await store.aclose()

    anyio.run(reach)


def serve_workers(settings: Settings, environ: Mapping[str, str]) -> None:
    """Several uvicorn workers on one socket; each builds its app from the environment and shares the store."""
    # The workers are new processes: they read everything, the sandbox's variables too, from the environment.
    os.environ.update(environ)
    os.environ.update(
        {
            "FLASHSNAP_TRANSPORT": settings.transport,
            "FLASHSNAP_HOST": settings.host,
            "FLASHSNAP_PORT": str(settings.port),
            "FLASHSNAP_LOG_LEVEL": settings.log_level,
            "FLASHSNAP_WORKERS": str(settings.workers),
            # Flags the workers cannot see: the tool selection (blank means unset).
            "FLASHSNAP_TOOLSETS": ",".join(settings.toolsets or ()),
            "FLASHSNAP_TOOLS": ",".join(settings.tools or ()),
            "FLASHSNAP_EXCLUDE_TOOLS": ",".join(settings.exclude_tools),
            "FLASHSNAP_READ_ONLY": "1" if settings.read_only else "",
            WORKER_SANDBOX: "1" if settings.sandbox else "",
        }
    )
    log.info("flashsnap-mcp %s starting %d workers", __version__, settings.workers)
    uvicorn.run(
        "server.cli.main:worker_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        lifespan="on",
        **uvicorn_options(settings, workers=True),
    )


WORKER_SANDBOX = "FLASHSNAP_WORKER_SANDBOX"  # set by the parent for workers of a --sandbox server


def worker_app() -> Any:
    """The app of one HTTP worker, built from the environment its parent prepared."""
    settings = Settings.from_env(os.environ, sandbox=os.environ.get(WORKER_SANDBOX) == "1")
    logs.configure(settings.log_level, settings.secrets)
    tracing.configure(os.environ)
    otel_logs.configure(os.environ)
    return build_http_app(settings)


def serve(settings: Settings) -> None:
    if settings.transport == "stdio":
        log.info("flashsnap-mcp %s starting over stdio", __version__)
        anyio.run(functools.partial(serve_stdio, create_app(settings), grace_s=settings.shutdown_grace_s))
        return
    config = uvicorn.Config(
        build_http_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our stderr handler, with its secret mask
        # The grace is the drain's (server/transports/draining.py); uvicorn's own wait comes after it.
        timeout_graceful_shutdown=math.ceil(CUT_ANSWER_S),
        lifespan="on",
        **uvicorn_options(settings),
    )
    # On SIGTERM or SIGINT: no new connections, the requests received are answered within the grace (a call
    # still running then gets a `shutdown` error), then uvicorn stops and the lifespan closes the upstream clients.
    DrainingServer(config, grace_s=settings.shutdown_grace_s).run()
