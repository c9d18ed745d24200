"""Developer commands: `make demo` and `make mcpb`."""
