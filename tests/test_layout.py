"""The layout keeps telling the architecture: no import circles, a small root, a call wrapper that names no tool.

`make lint` runs the import contracts in pyproject.toml (`lint-imports`); these tests add what they cannot say.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp

import tools

ROOT = Path(__file__).parent.parent
ROOT_FILES_AT_MOST = 14  # besides __init__.py and __main__.py


def strongly_connected(imports: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components of an import graph, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(imports):
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work = [(start, iter(sorted(imports[start])))]
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(imports.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: set[str] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    found.append(component)
    return found


def circles(imports: Mapping[str, Iterable[str]]) -> list[list[str]]:
    return sorted(sorted(c) for c in strongly_connected(imports) if len(c) > 1)


def test_the_cycle_finder_finds_a_circle_and_only_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_any_two_modules() -> None:
    # grimp counts imports inside functions and under TYPE_CHECKING: a deferred import still ties the two modules.
    graph = grimp.build_graph("server", "tools", cache_dir=None)
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    found = circles(imports)
    shown = []
    for circle in found:
        members = set(circle)
        edges = [
            f"  {details['importer']}:{details['line_number']} imports {details['imported']}"
            for importer in circle
            for imported in sorted(imports[importer] & members)
            for details in graph.get_import_details(importer=importer, imported=imported)
        ]
        shown.append("circle: " + ", ".join(circle) + "\n" + "\n".join(edges))
    assert not found, "import circles between modules:\n" + "\n".join(shown)


def test_every_room_and_root_module_has_a_place_in_the_layers() -> None:
    """A new room or root module must be placed in the layers contract, or the contract silently ignores it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c for c in config["contracts"] if c["type"] == "layers" and "containers" not in c]
    placed = {name.strip() for layer in layers["layers"] for name in re.split(r"[|:]", layer)}
    server = ROOT / "server"
    present = {f"server.{p.stem}" for p in server.glob("*.py")} | {
        f"server.{p.parent.name}" for p in server.glob("*/__init__.py")
    }
    # The package itself and its entry point sit above everything; the sandbox has contracts of its own.
    apart = {"server.__init__", "server.__main__", "server.sandbox"}
    assert present - apart - placed == set()
    assert placed - present - {"tools"} == set(), "the layers name modules that are gone"


def test_the_server_root_keeps_only_the_spine_and_the_ground_floor() -> None:
    root = sorted(p.name for p in (ROOT / "server").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(root) <= ROOT_FILES_AT_MOST, f"{len(root)} modules at server/'s root: {root}"


def test_the_call_wrapper_names_no_tool() -> None:
    source = (ROOT / "server" / "tooling" / "calls.py").read_text()
    named = sorted(spec.name for spec in tools.ALL if re.search(rf"\b{re.escape(spec.name)}\b", source))
    assert named == [], f"server/tooling/calls.py names these tools; the tool's service should own that: {named}"


def writers_of_the_call_values(path: Path) -> list[str]:
    """Where `path` enters `server.context`'s writers (`calling`, `serving`): `context.calling`, or imported by name."""
    writers = {"calling", "serving"}
    found = []
    where = path.relative_to(ROOT)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "server.context":
            found += [f"{where}:{node.lineno} imports {alias.name}" for alias in node.names if alias.name in writers]
        elif isinstance(node, ast.Attribute) and node.attr in writers and getattr(node.value, "id", None) == "context":
            found.append(f"{where}:{node.lineno} uses context.{node.attr}")
    return found


def test_only_the_call_wrapper_writes_the_values_of_a_call() -> None:
    """server.context declares the call's values (the import contracts keep every ContextVar there); the tool
    wrapper in server/tooling/calls.py is the one module that sets them, as the SDK's auth middleware sets its own."""
    modules = [*(ROOT / "server").rglob("*.py"), *(ROOT / "tools").rglob("*.py")]
    apart = {ROOT / "server" / "context.py", ROOT / "server" / "tooling" / "calls.py"}
    elsewhere = [w for path in sorted(modules) if path not in apart for w in writers_of_the_call_values(path)]
    assert elsewhere == [], "only server/tooling/calls.py writes a call's values:\n" + "\n".join(elsewhere)
    wrapper = ROOT / "server" / "tooling" / "calls.py"
    assert writers_of_the_call_values(wrapper), "the finder no longer sees the wrapper's writes"


def architecture_boxes() -> dict[str, set[str]]:
    """The README's architecture map, read as boxes: each box's title and the module names written in it."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Architecture") :]
    lines = section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)].splitlines()
    boxes: dict[str, set[str]] = {}
    for row, line in enumerate(lines):
        for head in re.finditer(r"┌─ (.+?) ─+┐", line):
            title, left, right = head.group(1).split("   ")[0].strip(), head.start(), head.end()
            names: set[str] = set()
            for below in lines[row + 1 :]:
                inside = below[left:right]
                if inside.startswith("└"):
                    break
                names |= set(re.findall(r"(?<![/\w])(\w+\.py)\b", inside))  # `state/bus.py` points elsewhere
            boxes[title] = names
    return boxes


def test_the_readme_map_names_every_folder_and_module_where_it_lives() -> None:
    """A new module appears in its folder's box, a moved one moves there, a gone one leaves: the map never drifts."""
    boxes = architecture_boxes()
    server = ROOT / "server"
    for folder in sorted(p.parent for p in server.glob("*/__init__.py")):
        title = f"server/{folder.name}/"
        assert title in boxes, f"the README's architecture map has no box for {title}"
        modules = {p.name for p in folder.glob("*.py")} - {"__init__.py"}
        gone, unnamed = sorted(boxes[title] - modules), sorted(modules - boxes[title])
        assert boxes[title] == modules, f"{title}: the map names {gone}, not there; it does not name {unnamed}"
    root = {p.name for p in server.glob("*.py")} - {"__init__.py", "__main__.py"}
    single = {title.removeprefix("server/") for title in boxes if title.endswith(".py")}
    assert boxes["server/ root: the ground floor"] | single == root, "every module at server/'s root has a box"
    assert "__init__.py" in boxes["tools/"], "the map says where the one list of tools is"
