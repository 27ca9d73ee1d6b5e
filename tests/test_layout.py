"""House rules that a reviewer would otherwise have to remember."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "tfdistill"
LONGEST = 80


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of every function in `source` longer than `LONGEST` lines, docstring
    included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > LONGEST:
                found.append((node.name, lines))
    return found


def test_no_function_in_the_package_is_over_80_lines():
    found = {
        f"{path.relative_to(PACKAGE.parent)}:{name}": lines
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, lines in long_functions(path.read_text())
    }
    assert found == {}


def test_the_length_check_counts_lines():
    body = "\n".join(f"    x{i} = {i}" for i in range(LONGEST))
    assert long_functions(f"def f():\n{body}\n") == [("f", LONGEST + 1)]
    assert long_functions(f"def f():\n{body[: body.rindex(chr(10))]}\n") == []
