"""Tool arguments held to their schema: unknown names refused, strict types, finite numbers, one error format.

The SDK validates arguments before a tool's code runs and would answer a mistake with pydantic's
own text (the input echoed, a library URL, no `_meta`). Here every tool's argument model is made
strict and closed, and a failed validation becomes an `invalid_arguments` error like every other failure.

The published schema is written in the one form every client's converter takes (tests/test_converters.py):
- an optional argument is `"type": [X, "null"]`, its description beside the type, never `anyOf: [X, null]`
  (google-genai keeps only the inner X of such a pair, and with it loses the description);
- no `additionalProperties: false` anywhere (google-genai crashes on a boolean there). Unknown argument names
  are refused all the same; a nested object whose fields are all required is closed with `maxProperties`
  (the same set of values, in a keyword every converter keeps or drops without harm);
- every tool declares at least one property (openai-agents' strict mode refuses an object with none that is
  not closed by `additionalProperties: false`).
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from server.errors import InvalidArguments

# Strict: no bool taken for an int, no "1" for a number. Finite: NaN and Infinity are no JSON an upstream accepts.
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
MAX_PROBLEMS = 10


class AsSent(FuncMetadata):
    """The SDK's argument handling less its guess that a string holding JSON was meant as the parsed value.

    That guess turned a `prompt` of `'["a", "b"]'` into a list (refused, though the schema takes any string) and
    a `messages` sent as a string into a list (taken, though the schema refuses a string). Arguments are judged
    as sent, so each accepts exactly what its published schema accepts.
    """

    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        return data


def integral_numbers(value: Any) -> Any:
    """`value` with each float that is a whole number (3.0, 1e2) made an int, at any depth.

    JSON Schema counts 3.0 as an integer and JSON has one kind of number, so a model that writes `3.0` for an
    integer argument is right; a strict int refuses a float, so it is made the int it is. A number argument
    takes an int as it takes a float, so nothing else changes; 3.5 stays a float and is refused for an integer.
    """
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: integral_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral_numbers(v) for v in value]
    return value


def _integral_arguments(cls: type[BaseModel], data: Any) -> Any:
    return integral_numbers(data)


def close(tool: Tool) -> None:
    """Swap the tool's argument model for a strict, closed copy, and publish that copy's schema."""
    loose = tool.fn_metadata.arg_model
    config = {**loose.model_config, **STRICT}
    namespace = {
        "model_config": config,
        "__module__": __name__,
        "_integral": model_validator(mode="before")(_integral_arguments),
    }
    strict: type[ArgModelBase] = type(loose.__name__, (loose,), namespace)
    fields = {name: getattr(tool.fn_metadata, name) for name in FuncMetadata.model_fields}
    tool.fn_metadata = AsSent.model_construct(**{**fields, "arg_model": strict})
    tool.parameters = published(untitled(inline_refs(strict.model_json_schema(by_alias=True))))


def published(schema: dict[str, Any]) -> dict[str, Any]:
    """The argument schema in the form every converter takes (see the module's docstring); same values accepted."""
    # The root stays open in the schema; unknown argument names are refused by the strict model regardless.
    return {k: _published_value(k, v) for k, v in schema.items() if k != "additionalProperties"}


def _published_value(key: str, value: Any) -> Any:
    if key in ("properties", "$defs") and isinstance(value, dict):
        return {name: _published_node(sub) for name, sub in value.items()}
    if key in ("items", "additionalProperties") and isinstance(value, dict):
        return _published_node(value)
    if key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
        return [_published_node(sub) for sub in value]
    return value


def _published_node(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema below the root: a closed object whose fields are all required says so with `maxProperties`."""
    node = {k: _published_value(k, v) for k, v in schema.items()}
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
        properties = node.get("properties") or {}
        if set(properties) == set(node.get("required") or []):
            node["maxProperties"] = len(properties)
    return _merge_null(node)


def _merge_null(node: dict[str, Any]) -> dict[str, Any]:
    """`{anyOf: [X, {type: null}], description…}` as X with `null` added to its type (and its enum)."""
    members = node.get("anyOf")
    if not isinstance(members, list) or len(members) != 2 or {"type": "null"} not in members:
        return node
    inner = next(m for m in members if m != {"type": "null"})
    kind = inner.get("type")
    if not isinstance(kind, str) or "anyOf" in inner:
        return node
    merged = {k: v for k, v in node.items() if k != "anyOf"}
    merged.update(inner)
    merged["type"] = [kind, "null"]
    if isinstance(inner.get("enum"), list):
        merged["enum"] = [*inner["enum"], None]
    # The outer keywords (description, default, title) win over the inner ones: they describe the argument.
    merged.update({k: v for k, v in node.items() if k != "anyOf"})
    return merged


def untitled(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without pydantic's generated titles ("Break Test" for break_test): the names say it already,
    and every byte of a tool's schema is context a model pays for on each turn."""

    def strip(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, dict):
            return {
                k: strip(v, k == "properties" and not in_properties)
                for k, v in node.items()
                if not (k == "title" and not in_properties and isinstance(v, str))
            }
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    stripped: dict[str, Any] = strip(schema)
    return stripped


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with each `$ref` replaced by its definition: OpenAI's strict mode (as openai-agents
    converts it) refuses a reference it has not validated, and no argument model here is recursive."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                siblings = {k: resolve(v) for k, v in node.items() if k != "$ref"}
                return {**resolve(defs[ref.removeprefix("#/$defs/")]), **siblings}
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    inlined: dict[str, Any] = resolve(schema)
    return inlined


def allowed_names(tool: Tool) -> list[str]:
    return [field.alias or name for name, field in tool.fn_metadata.arg_model.model_fields.items()]


def invalid_arguments(tool: str, allowed: list[str], exc: ValidationError) -> InvalidArguments:
    """Each failed field and its rule; never the rejected value (it is the caller's data and may be huge)."""
    rules: dict[str, list[str]] = {}
    unknown: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in err["loc"] if not _union_member(part)]
        field = ".".join(loc) or "arguments"
        if err["type"] == "extra_forbidden" and len(loc) == 1:
            unknown.append(field)
        elif len(rules) < MAX_PROBLEMS or field in rules:
            rules.setdefault(field, []).append(str(err["msg"])[:200])
    # A value that matches no member of a union fails each of them: one rule, "… or …", per field.
    problems = [{"field": field, "rule": " or ".join(dict.fromkeys(msgs))} for field, msgs in rules.items()]
    parts = [f"{p['field']}: {p['rule']}" for p in problems]
    if unknown:
        parts.append(f"unknown argument(s) {', '.join(unknown)} (the arguments of {tool} are: {', '.join(allowed)})")
    details: dict[str, Any] = {"fields": problems, "allowed": allowed}
    if unknown:
        details["unknown"] = unknown
    return InvalidArguments(f"Invalid arguments for {tool}: " + "; ".join(parts) + ".", details=details)


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def _union_member(part: object) -> bool:
    """pydantic names the union member a value failed in the location (`float`, `constrained-str`, `list[…]`)."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "-" in part or "[" in part)


class Closed(BaseModel):
    """Base of nested argument models (a message, a feeling): the same strict, closed rules."""

    model_config = STRICT
