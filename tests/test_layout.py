"""The code's shape: no function in src/ longer than 60 lines."""

import ast
from pathlib import Path

import mialens

MAX_LINES = 60


def test_no_function_is_longer_than_60_lines():
    root = Path(mialens.__file__).parent
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines})")
    assert not long, "functions longer than 60 lines:\n" + "\n".join(long)
