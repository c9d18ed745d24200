"""The MCP tools, one module each; only the app factory imports this package."""

from tools import (
    ask_twins,
    check_quota,
    crystallize,
    delete_snapshot,
    generate,
    get_snapshot,
    list_brand_voices,
    list_models,
    list_snapshots,
    list_twins,
    list_workspaces,
    search_snapshots,
    snapshot,
    update_snapshot,
)

ALL = (
    list_workspaces.TOOL,
    check_quota.TOOL,
    list_models.TOOL,
    generate.TOOL,
    list_brand_voices.TOOL,
    list_twins.TOOL,
    ask_twins.TOOL,
    snapshot.TOOL,
    search_snapshots.TOOL,
    get_snapshot.TOOL,
    list_snapshots.TOOL,
    crystallize.TOOL,
    update_snapshot.TOOL,
    delete_snapshot.TOOL,
)
