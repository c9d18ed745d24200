"""Every input schema passes OpenAI's strict mode, judged by openai-agents' own MCP converter."""

from __future__ import annotations

import pytest
from agents.mcp.util import MCPUtil

from tests.conftest import MODES, Connect
from tools import ALL as ALL_TOOLS


class _Server:
    """The little of an openai-agents MCP server its converter reads; the tool list is our server's real one."""

    name = "flashsnap"
    tool_input_guardrails = None
    tool_output_guardrails = None

    def _get_failure_error_function(self, fn: object) -> object:
        return fn

    def _get_needs_approval_for_tool(self, tool: object, agent: object) -> bool:
        return False


@pytest.mark.parametrize("mode", MODES)
async def test_every_input_schema_is_accepted_in_strict_mode(connect: Connect, mode: str) -> None:
    async with connect(mode=mode, env={"FLASHSNAP_TOOLSETS": "all"}) as client:
        tools = (await client.list_tools()).tools
    assert len(tools) == len(ALL_TOOLS)
    for tool in tools:
        converted = MCPUtil.to_function_tool(tool, _Server(), True)  # type: ignore[arg-type]
        # The converter falls back to a loose schema, silently, when strict conversion fails.
        assert converted.strict_json_schema, tool.name
        assert converted.params_json_schema["additionalProperties"] is False
