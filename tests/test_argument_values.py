"""Each argument accepts exactly the values its published JSON Schema accepts, no more and no less.

Models write numbers as they like (`3.0` for an integer is right by JSON Schema), and JSON text inside a string is
still a string. The oracle is a Draft 2020-12 validator over the published schema; unknown argument names stay
refused whatever the schema says, and NaN and Infinity are not JSON, so they are never sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError

from server.app import FlashsnapServer, create_app
from server.config import Settings
from server.sandbox import EmulatorState
from tests.results import data, error

# --- the table: what models send, through the MCP client ------------------------------------------------------------

ACCEPTED = [
    ("search_snapshots", {"query": "pricing", "limit": 3.0}),  # a whole number as a float
    ("search_snapshots", {"query": "pricing", "limit": 1e1}),
    ("search_snapshots", {"query": '{"looks": "like JSON"}', "limit": 2}),  # a string, whatever it holds
    ("generate", {"model": "gpt-4.1-mini", "prompt": "Say hi", "max_tokens": 100.0}),  # a whole number as a float
    ("generate", {"model": "gpt-4.1-mini", "prompt": '["a", "b"]', "temperature": 1}),
    ("generate", {"model": "gpt-4.1-mini", "prompt": "Say hi", "workspace_id": None, "max_wait_s": 0}),
    ("list_models", {"provider": None, "include_unavailable": False}),
    ("list_workspaces", {"max_wait_s": 5.0}),
]
REFUSED = [
    ("search_snapshots", {"query": "pricing", "limit": 3.5}, "limit"),
    ("search_snapshots", {"query": "pricing", "limit": "3"}, "limit"),
    ("search_snapshots", {"query": "pricing", "limit": True}, "limit"),
    ("search_snapshots", {"query": "pricing", "limit": None}, "limit"),  # not nullable: it has a default
    ("generate", {"model": "gpt-4.1-mini", "prompt": "Say hi", "max_tokens": 100.5}, "max_tokens"),
    ("generate", {"model": "gpt-4.1-mini", "messages": '[{"role": "user", "content": "hi"}]'}, "messages"),
    ("generate", {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "x", "name": "a"}]}, "messages"),
    ("list_models", {"include_unavailable": 1}, "include_unavailable"),
    ("check_quota", {"workspace": "ws"}, "workspace"),  # an unknown name, refused whatever the schema says
]


@pytest.mark.parametrize(("tool", "arguments"), ACCEPTED)
async def test_values_the_schema_accepts_are_accepted(
    client: Client, state: EmulatorState, tool: str, arguments: dict[str, Any]
) -> None:
    data(await client.call_tool(tool, arguments))


@pytest.mark.parametrize(("tool", "arguments", "field"), REFUSED)
async def test_values_the_schema_refuses_are_refused_before_any_request(
    client: Client, state: EmulatorState, tool: str, arguments: dict[str, Any], field: str
) -> None:
    err = error(await client.call_tool(tool, arguments))
    assert err["code"] == "invalid_arguments"
    assert field in err["message"]
    assert sum(state.requests.values()) == 0


# --- the property: the schema is the oracle --------------------------------------------------------------------------


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """`pattern` as JSON Schema means it (ECMA-262): `$` ends the input, where Python's `re` also allows a final
    newline before it. jsonschema uses `re.search`, which would call `"abc\\n"` a workspace id."""
    if isinstance(instance, str) and not re.search(re.sub(r"(?<!\\)\$", r"\\Z", pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Oracle = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})

CHARS = st.characters(exclude_categories=["Cs"])  # no lone surrogates: they are not JSON
TEXT = st.text(CHARS, max_size=12)
NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


def _near(bound: float | None, whole: bool) -> st.SearchStrategy[Any]:
    """Numbers at and around a bound, where an off-by-one or a float-for-int difference shows."""
    if bound is None:
        return st.nothing()
    spots = [bound - 1, bound, bound + 1, bound - 0.5, bound + 0.5, float(bound)]
    return st.sampled_from([int(s) if whole and float(s).is_integer() else s for s in spots])


def values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values drawn from the schema's own shape (on and just past each limit), mixed with any JSON at all."""
    return st.one_of(_shaped(schema), ANY_JSON)


def _shaped(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "anyOf" in schema:
        return st.one_of([values(member) for member in schema["anyOf"]])
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    options: list[st.SearchStrategy[Any]] = []
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    for kind in kinds:
        options.append(_of_kind(kind, schema))
    return st.one_of(options) if options else ANY_JSON


def _of_kind(kind: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "number"):
        whole = kind == "integer"
        low, high = schema.get("minimum"), schema.get("maximum")
        inside = (
            st.integers(int(low or -1000), int(high if high is not None else 1000))
            if whole
            else st.floats(low, high, allow_nan=False, allow_infinity=False)
        )
        integral_floats = inside.map(float) if whole else st.nothing()
        return st.one_of(inside, integral_floats, _near(low, whole), _near(high, whole), NUMBERS)
    if kind == "string":
        low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
        strings = [st.text(CHARS, min_size=max(low - 1, 0), max_size=high + 1)]
        if "pattern" in schema:
            strings.append(st.from_regex(schema["pattern"].rstrip("$") + r"\Z", fullmatch=False))
            strings.append(
                st.from_regex(schema["pattern"].rstrip("$") + r"\Z", fullmatch=False).map(lambda s: s + "\n")
            )
        strings.append(ANY_JSON.map(json.dumps))  # JSON text inside a string is still a string
        if schema.get("maxLength", 10**9) <= 40:
            strings.append(st.sampled_from(["x" * schema["maxLength"], "x" * (schema["maxLength"] + 1)]))
        return st.one_of(strings)
    if kind == "array":
        items = schema.get("items", {})
        low, high = schema.get("minItems", 0), min(schema.get("maxItems", 4), 4)
        return st.lists(values(items), min_size=max(low - 1, 0), max_size=high + 1)
    if kind == "object":
        return _objects(schema)
    return ANY_JSON


def _valid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema accepts (a base for the others: one argument off at a time is judged alone)."""
    if "anyOf" in schema:
        return st.one_of([_valid(member) for member in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type", "null")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "number"):
        low, high = schema.get("minimum", -1000), schema.get("maximum", 1000)
        if kind == "integer":
            return st.integers(int(low), int(high))
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if kind == "string":
        low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
        if "pattern" in schema:
            regex = st.from_regex(schema["pattern"].rstrip("$") + r"\Z", fullmatch=False)
            return regex.filter(lambda s: low <= len(s) <= schema.get("maxLength", 10**9))
        return st.text(CHARS, min_size=low, max_size=high)
    if kind == "array":
        low, high = schema.get("minItems", 0), min(schema.get("maxItems", 3), 3)
        return st.lists(_valid(schema.get("items", {})), min_size=low, max_size=max(low, high))
    if kind == "object":
        properties = schema.get("properties", {})
        return st.fixed_dictionaries({n: _valid(properties[n]) for n in schema.get("required", [])})
    return st.none()


def _objects(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments: a valid set (some optional ones too), then up to two of them (or a stray name) drawn from
    anything, so each value is judged with the rest valid around it."""
    properties: dict[str, Any] = schema.get("properties", {})
    names = sorted(properties)
    required = schema.get("required", [])

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        optional = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
        obj = {name: draw(_valid(properties[name])) for name in sorted({*required, *optional})}
        for _ in range(draw(st.integers(0, 2))):
            name = draw(st.sampled_from([*names, "extra", "workspace", "Limit"]))
            if name in properties:
                obj[name] = draw(values(properties[name]))
            elif draw(st.integers(0, 3)) == 0:
                obj[name] = draw(ANY_JSON)
        if required and draw(st.integers(0, 9)) == 0:
            obj.pop(draw(st.sampled_from(required)), None)
        return obj

    return build()


def _app() -> FlashsnapServer:
    return create_app(Settings.from_env({}))


TOOL_NAMES = sorted(tool.name for tool in _app()._tool_manager.list_tools())


def _accepts(tool: Tool, arguments: dict[str, Any]) -> bool:
    try:
        tool.fn_metadata.validate_arguments(arguments)  # what the SDK runs before a tool's code
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_each_argument_accepts_exactly_what_its_schema_accepts(name: str) -> None:
    tool = _app()._tool_manager.get_tool(name)
    assert tool is not None
    schema = tool.parameters
    oracle = Oracle(schema)
    known = set(schema.get("properties", {}))

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_objects(schema))
    def check(arguments: dict[str, Any]) -> None:
        sent = json.loads(json.dumps(arguments))  # what reaches the server is JSON
        expected = oracle.is_valid(sent) and set(sent) <= known
        assert _accepts(tool, sent) == expected, (sent, list(oracle.iter_errors(sent))[:2])

    check()
