"""The baseline: a bare MCPServer with one tool making the same upstream request, with nothing else.

No token manager (one token fetched at start-up), no scheduler, no error mapping, no workspace
resolution: the floor that flashsnap-mcp's own `list_models` is measured against. It returns the
same output model, so both pay the same for structured output and the client's schema check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp.server.mcpserver import Context, MCPServer

from tools.list_models import ModelItem, ModelList


@asynccontextmanager
async def lifespan(_: MCPServer[httpx2.AsyncClient]) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=os.environ["NEUROFLASH_API_URL"]) as http:
        token = await http.post(
            os.environ["NEUROFLASH_TOKEN_URL"],
            data={
                "grant_type": "client_credentials",
                "client_id": os.environ["NEUROFLASH_CLIENT_ID"],
                "client_secret": os.environ["NEUROFLASH_CLIENT_SECRET"],
            },
        )
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        http.headers["x-workspace-id"] = os.environ["NEUROFLASH_WORKSPACE_ID"]
        yield http


server: MCPServer[httpx2.AsyncClient] = MCPServer("bare", lifespan=lifespan)


@server.tool()
async def list_models(ctx: Context[httpx2.AsyncClient, Any]) -> ModelList:
    """List the models."""
    response = await ctx.request_context.lifespan_context.get("/api/ds-prototypes/model_selection/models")
    models = [ModelItem.model_validate(m) for m in response.json() if m["available"]]
    return ModelList(workspace_id=os.environ["NEUROFLASH_WORKSPACE_ID"], models=models)


if __name__ == "__main__":
    # Like flashsnap-mcp, no log line per upstream request: the comparison is of the tool paths alone.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    server.run("stdio")
