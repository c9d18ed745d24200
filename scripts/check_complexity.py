"""`make lint`: no function, method or class of the scheduler above radon's grade C (cyclomatic complexity 20).

The scheduler decides what may be sent against an upstream's budget; its decisions stay small named
steps, each readable and unit-tested alone. Usage: `python scripts/check_complexity.py [PATH ...]`
(default: server/scheduler); exits 1 and lists every block above the grade.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

# radon ships no type information; what it returns is read into `Block` at once.
from radon.complexity import add_inner_blocks, cc_rank, cc_visit

ROOT = Path(__file__).resolve().parent.parent
CHECKED = (ROOT / "server" / "scheduler",)
WORST = "C"  # the highest grade allowed (A best, F worst)


@dataclass(frozen=True)
class Block:
    """One function, method, closure or class, where it is, and its cyclomatic complexity."""

    path: str
    line: int
    name: str
    complexity: int

    @property
    def grade(self) -> str:
        """radon's grade, A (1-5) to F (41 and more)."""
        return str(cc_rank(self.complexity))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def blocks(path: Path) -> list[Block]:
    """Every block of one module, closures included (a closure is a function too)."""
    found = add_inner_blocks(cc_visit(path.read_text(encoding="utf-8")))
    return [Block(_shown(path), int(b.lineno), str(b.fullname), int(b.complexity)) for b in found]


def modules(root: Path) -> list[Path]:
    """The Python modules under `root` (or `root` itself when it is one), in a stable order."""
    return [root] if root.is_file() else sorted(root.rglob("*.py"))


def offenders(roots: list[Path]) -> list[Block]:
    """The blocks under `roots` graded above `WORST`."""
    return [block for root in roots for path in modules(root) for block in blocks(path) if block.grade > WORST]


def main(argv: list[str]) -> int:
    """Check the paths given (default: the scheduler); 1 when any block is above the grade, else 0."""
    roots = [Path(arg) for arg in argv] or list(CHECKED)
    missing = [root for root in roots if not root.exists()]
    if missing:
        print(f"check_complexity: no such path: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    found = offenders(roots)
    for block in found:
        print(
            f"{block.path}:{block.line}: {block.name} has cyclomatic complexity {block.complexity} "
            f"(grade {block.grade}, above {WORST}): split it into named steps"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
