"""The scheduler's complexity bound (`scripts/check_complexity.py`, run by `make lint`) holds, and bites."""

from __future__ import annotations

from pathlib import Path

from scripts.check_complexity import CHECKED, main, offenders


def branches(n: int) -> str:
    """A function of cyclomatic complexity n + 1."""
    body = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(n))
    return f"def f(x: int) -> int:\n{body}    return -1\n"


def test_no_block_of_the_scheduler_is_above_grade_c() -> None:
    assert offenders(list(CHECKED)) == []


def test_a_function_of_grade_d_is_reported_and_fails_the_check(tmp_path: Path) -> None:
    module = tmp_path / "tangled.py"
    module.write_text(branches(20), encoding="utf-8")  # complexity 21: grade D
    [block] = offenders([tmp_path])
    assert (block.name, block.complexity, block.grade) == ("f", 21, "D")
    assert main([str(tmp_path)]) == 1


def test_a_function_of_grade_c_passes(tmp_path: Path) -> None:
    (tmp_path / "busy.py").write_text(branches(19), encoding="utf-8")  # complexity 20: still C
    assert offenders([tmp_path]) == []
    assert main([str(tmp_path)]) == 0


def test_a_tangled_closure_is_found_too(tmp_path: Path) -> None:
    inner = branches(20).replace("\n", "\n    ")
    (tmp_path / "nested.py").write_text(f"def outer() -> None:\n    {inner}\n", encoding="utf-8")
    assert [block.name for block in offenders([tmp_path])] == ["outer.f"]
