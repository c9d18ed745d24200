"""The MCP tools, one module each; only the app factory imports this package."""

from tools import (
    check_quota,
    generate,
    get_snapshot,
    list_models,
    list_workspaces,
    search_snapshots,
    snapshot,
)

ALL = (
    list_workspaces.TOOL,
    check_quota.TOOL,
    list_models.TOOL,
    generate.TOOL,
    snapshot.TOOL,
    search_snapshots.TOOL,
    get_snapshot.TOOL,
)
