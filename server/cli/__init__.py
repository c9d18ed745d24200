"""The `flashsnap-mcp` command and its subcommands: check, status, and the choice of transport."""
