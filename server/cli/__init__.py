"""The `flashsnap-mcp` command and its subcommands: check, status, and the choice of transport."""

from server.cli.main import main

__all__ = ["main"]
