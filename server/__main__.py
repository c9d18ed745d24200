"""`python -m server`: the same entry point as the `flashsnap-mcp` console script."""

from server.cli.main import main

if __name__ == "__main__":
    main()
