"""pydantic-ai: flashsnap-mcp as a toolset; the built-in `test` model stands in for a real one and calls a tool."""

from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.models.test import TestModel

flashsnap = MCPToolset({"mcpServers": {"flashsnap": {"command": "flashsnap-mcp", "args": ["--sandbox"]}}})
# Use a real model instead, e.g. Agent("anthropic:claude-sonnet-4-5", toolsets=[flashsnap]).
agent = Agent(TestModel(call_tools=["list_workspaces"]), toolsets=[flashsnap])

result = agent.run_sync("Which neuroflash workspaces can I write in?")
print("answer:", result.output)
