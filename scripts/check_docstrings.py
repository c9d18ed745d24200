"""`make lint`: every public function and method in server/ and tools/ that raises says so in a `Raises:` section.

ruff's DOC501 checks that a `Raises:` section names each exception a function raises itself, but
only where a docstring exists; this check adds the other half: a public function that raises has
a docstring with that section. (DOC502 stays off on purpose: a `Raises:` section may name what a
caller meets from the layers below, which is what a caller needs to know.)
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOTS = ("server", "tools")


def _raises(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether the function's own body raises a named exception (bare re-raises and nested functions aside)."""
    pending: list[ast.AST] = list(node.body)
    while pending:
        child = pending.pop()
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        if isinstance(child, ast.Raise) and child.exc is not None:
            return True
        pending.extend(ast.iter_child_nodes(child))
    return False


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__") and name != "__init__")


def offenders(root: Path) -> Iterator[str]:
    """`path:line name` for each public function or method that raises without a `Raises:` section."""
    for path in sorted(p for top in ROOTS for p in (root / top).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        scopes: list[tuple[ast.AST, bool]] = [(tree, True)]
        while scopes:
            scope, visible = scopes.pop()
            for node in ast.iter_child_nodes(scope):
                if isinstance(node, ast.ClassDef):
                    scopes.append((node, visible and _public(node.name)))
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    documented = "Raises:" in (ast.get_docstring(node) or "")
                    if visible and _public(node.name) and _raises(node) and not documented:
                        yield f"{path.relative_to(root)}:{node.lineno} {node.name}"


def main() -> int:
    found = list(offenders(Path(__file__).resolve().parent.parent))
    for line in found:
        print(f"{line}: raises, but its docstring has no Raises: section")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
