"""fastmcp: its Client speaks to flashsnap-mcp over stdio, here in read-only mode."""

import asyncio

from fastmcp import Client

config = {"mcpServers": {"flashsnap": {"command": "flashsnap-mcp", "args": ["--sandbox", "--read-only"]}}}


async def main() -> None:
    async with Client(config) as client:
        print("tools:", sorted(tool.name for tool in await client.list_tools()))
        quota = await client.call_tool("check_quota", {})
        print("can_generate:", quota.structured_content["can_generate"])


asyncio.run(main())
