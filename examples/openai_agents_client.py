"""openai-agents: give an Agent flashsnap-mcp's tools over stdio (`Runner.run(agent, ...)` then needs a model key)."""

import asyncio

from agents import Agent
from agents.mcp import MCPServerStdio


async def main() -> None:
    params = {"command": "flashsnap-mcp", "args": ["--sandbox", "--read-only"]}
    async with MCPServerStdio(params=params, name="flashsnap", cache_tools_list=True) as flashsnap:
        agent = Agent(name="Writer", instructions="Check the quota before writing.", mcp_servers=[flashsnap])
        print("tools:", sorted(tool.name for tool in await flashsnap.list_tools()))
        result = await flashsnap.call_tool("list_workspaces", {})
        print("workspaces:", [w["name"] for w in (result.structured_content or {})["workspaces"]])
        print("agent:", agent.name, "with", len(agent.mcp_servers), "MCP server")


asyncio.run(main())
