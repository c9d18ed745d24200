"""Every client's converter takes every tool's input schema, and keeps every argument's description.

Real clients do not hand `inputSchema` to a model as it is; they convert it first, each in its own way:

- google-genai (Gemini SDK), `_mcp_utils.mcp_to_gemini_tool`: crashed on `additionalProperties: false`, and dropped
  the description of every `anyOf: [X, null]`;
- openai-agents, `MCPUtil.to_function_tool(…, convert_schemas_to_strict=True)`: refuses an object with no declared
  properties that is not closed;
- anthropic, `anthropic.lib.tools.mcp.async_mcp_tool`: passes the schema through;
- pydantic-ai, `OpenAIJsonSchemaTransformer(strict=True)` for OpenAI models, `GoogleJsonSchemaTransformer` for Gemini.

mcpo and langchain-mcp-adapters need mcp < 2 and are left out (this server's SDK is mcp 2.x). Each row below runs one
converter over every tool and checks the converted schema: no error, and each argument (and each field of a nested
object) still has its description.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from agents.mcp.util import MCPUtil
from anthropic.lib.tools.mcp import async_mcp_tool
from google.genai import _mcp_utils
from mcp.types import Tool
from pydantic_ai.profiles.google import GoogleJsonSchemaTransformer
from pydantic_ai.profiles.openai import OpenAIJsonSchemaTransformer

from tests.conftest import Connect
from tests.test_strict_schemas import _Server


def _google_genai(tool: Tool) -> dict[str, Any]:
    converted = _mcp_utils.mcp_to_gemini_tool(tool)
    declarations = converted.function_declarations or []
    assert len(declarations) == 1
    assert declarations[0].parameters is not None
    schema: dict[str, Any] = declarations[0].parameters.model_dump(mode="json", exclude_none=True)
    return schema


def _openai_agents_strict(tool: Tool) -> dict[str, Any]:
    converted = MCPUtil.to_function_tool(tool, _Server(), True)  # type: ignore[arg-type]
    # It falls back to the loose schema, silently, when strict conversion fails: that is a failure here.
    assert converted.strict_json_schema, "openai-agents could not make the schema strict"
    return converted.params_json_schema


def _anthropic(tool: Tool) -> dict[str, Any]:
    converted = async_mcp_tool(tool, object())  # type: ignore[arg-type]
    schema: dict[str, Any] = dict(converted.to_dict()["input_schema"])
    return schema


def _pydantic_ai_openai(tool: Tool) -> dict[str, Any]:
    transformer = OpenAIJsonSchemaTransformer(dict(tool.input_schema), strict=True)
    return transformer.walk()


def _pydantic_ai_google(tool: Tool) -> dict[str, Any]:
    return GoogleJsonSchemaTransformer(dict(tool.input_schema)).walk()


CONVERTERS: dict[str, Callable[[Tool], dict[str, Any]]] = {
    "google-genai": _google_genai,
    "openai-agents-strict": _openai_agents_strict,
    "anthropic": _anthropic,
    "pydantic-ai-openai-strict": _pydantic_ai_openai,
    "pydantic-ai-google": _pydantic_ai_google,
}


def _described(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    """(path, description) of each property of `schema`, and of the properties of objects nested in it."""
    for name, prop in (schema.get("properties") or {}).items():
        if "description" in prop:
            yield f"{path}{name}", prop["description"]
        yield from _nested(prop, f"{path}{name}.")


def _nested(prop: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
    for member in [prop, *prop.get("anyOf", []), *prop.get("any_of", [])]:
        items = member.get("items")
        if isinstance(items, dict):
            yield from _described(items, path + "[].")
        if member is not prop and "properties" in member:
            yield from _described(member, path)


def _find(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The converted property at `path`, looking through the wrappers a converter may put around it."""
    node: dict[str, Any] | None = schema
    for part in path.split("."):
        if node is None:
            return None
        if part == "[]":
            node = _unwrap(node).get("items")
            continue
        node = (_unwrap(node).get("properties") or {}).get(part)
    return node


def _unwrap(node: dict[str, Any]) -> dict[str, Any]:
    for key in ("anyOf", "any_of"):
        for member in node.get(key) or []:
            if member.get("type") not in ("null", "NULL") and member != {"nullable": True}:
                return dict(member)
    return node


async def _tool_list(connect: Connect) -> list[Tool]:
    async with connect(env={"FLASHSNAP_TOOLSETS": "all"}) as client:  # every toolset's tools
        return (await client.list_tools()).tools


@pytest.mark.parametrize("converter", list(CONVERTERS))
async def test_every_converter_takes_every_tool_and_keeps_each_description(
    converter: str, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    tool_list = await _tool_list(connect)
    assert tool_list
    lost: list[str] = []
    for tool in tool_list:
        converted = CONVERTERS[converter](tool)
        published = dict(_described(dict(tool.input_schema)))
        assert set(tool.input_schema.get("properties", {})) <= {p.split(".")[0] for p in published}, tool.name
        for path, description in published.items():
            found = _find(converted, path)
            if found is None or description not in str(found.get("description") or ""):
                lost.append(f"{tool.name}.{path}")
    assert not lost, f"{converter} lost the description of {len(lost)} argument(s): {lost}"


async def test_the_matrix_covers_every_tool(connect: Connect) -> None:
    # The matrix above runs on the real tool list; each tool there has at least one argument to describe.
    for tool in await _tool_list(connect):
        assert tool.input_schema.get("properties"), tool.name
