"""Executors: verified docstring and ``-> None`` edits located by symbol."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Any

import pytest

from actors.evolution.agents.logic import Change, DocstringExecutor, ReturnNoneExecutor, Skip


def task(action: str, file: str, symbol: str | None, line: int = 0) -> dict[str, Any]:
    return {"id": "task-1", "action": action, "file": file, "symbol": symbol, "line": line}


def doc(file: str, symbol: str | None, line: int = 0) -> dict[str, Any]:
    return task("add_docstring", file, symbol, line)


def ret(file: str, symbol: str, line: int = 0) -> dict[str, Any]:
    return task("add_return_annotation", file, symbol, line)


def definitions(path: Path) -> dict[str, ast.AST]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, ast.AST] = {"<module>": tree}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                found[prefix + child.name] = child
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


def docstring(path: Path, symbol: str) -> str | None:
    node = definitions(path)[symbol]
    assert isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    return ast.get_docstring(node)


def returns_none(path: Path, symbol: str) -> bool:
    node = definitions(path)[symbol]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    return isinstance(node.returns, ast.Constant) and node.returns.value is None


SOURCE = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    # -*- coding: utf-8 -*-
    import os


    class Store:
        def __init__(self) -> None:
            self.items: list[str] = []

        def add(self, item: str):
            self.items.append(item)

        def get_count(self) -> int:
            return len(self.items)

        @property
        def empty(self) -> bool:
            return not self.items

        class Inner:

            def reset(self, other):
                pass


    def one_liner(): return os.sep


    class Tiny: pass


    @staticmethod
    def decorated(
        a: int,
        b: str = ")",  # a ")" in a comment too
        c: tuple[int, ...] = (1, 2),
    ):
        print(a, b, c)


    async def fetch(url: str):
        await something(url)
    """
)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "store.py").write_text(SOURCE, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("<module>", "The store module."),
        ("Store", "Represent a store."),
        ("Store.add", "Add the given item."),
        ("Store.get_count", "Return the count."),
        ("Store.empty", "Return the empty."),
        ("Store.Inner.reset", "Reset another inner."),
        ("one_liner", "Return the one liner."),
        ("Tiny", "Represent a tiny."),
        ("decorated", "Handle the decorated."),
        ("fetch", "Fetch the given url."),
    ],
)
def test_docstring_added(workdir: Path, symbol: str, expected: str) -> None:
    outcome = DocstringExecutor().apply(doc("pkg/store.py", symbol), workdir)
    assert isinstance(outcome, Change), outcome
    path = workdir / "pkg" / "store.py"
    assert docstring(path, symbol) == expected
    assert outcome.type == "docstring_added"
    assert outcome.symbol == symbol
    assert f"+{' ' * 0}" in outcome.diff
    assert expected in outcome.diff
    others = [s for s in definitions(path) if s != symbol]
    assert all(docstring(path, s) is None for s in others)


def test_docstring_layout(workdir: Path) -> None:
    executor = DocstringExecutor()
    for symbol in ("<module>", "Store", "one_liner", "Tiny", "Store.Inner"):
        assert isinstance(executor.apply(doc("pkg/store.py", symbol), workdir), Change)
    text = (workdir / "pkg" / "store.py").read_text(encoding="utf-8")
    assert text.startswith('#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n"""The store')
    assert '"""The store module."""\n\nimport os\n' in text
    assert 'class Store:\n    """Represent a store."""\n\n    def __init__' in text
    assert 'def one_liner():\n    """Return the one liner."""\n    return os.sep\n' in text
    assert 'class Tiny:\n    """Represent a tiny."""\n\n    pass\n' in text
    # blank lines after the header stay after the docstring
    assert 'class Inner:\n        """Represent an inner."""\n\n        def reset' in text


def test_several_edits_in_any_order(workdir: Path) -> None:
    path = workdir / "pkg" / "store.py"
    docs, rets = DocstringExecutor(), ReturnNoneExecutor()
    # deliberately top-down with stale line numbers: lookup is by symbol
    steps = [
        doc("pkg/store.py", "<module>", 99),
        ret("pkg/store.py", "Store.add", 1),
        doc("pkg/store.py", "Store.add", 1),
        doc("pkg/store.py", "one_liner", 1),
        ret("pkg/store.py", "decorated", 1),
        doc("pkg/store.py", "decorated", 1),
        ret("pkg/store.py", "fetch", 1),
        ret("pkg/store.py", "Store.Inner.reset", 1),
    ]
    for step in steps:
        executor = docs if docs.supports(step["action"]) else rets
        assert isinstance(executor.apply(step, workdir), Change), step
    assert returns_none(path, "Store.add")
    assert returns_none(path, "decorated")
    assert returns_none(path, "fetch")
    assert returns_none(path, "Store.Inner.reset")
    assert docstring(path, "decorated") == "Handle the decorated."
    text = path.read_text(encoding="utf-8")
    assert '    c: tuple[int, ...] = (1, 2),\n) -> None:\n    """Handle' in text
    assert "async def fetch(url: str) -> None:\n" in text


def test_return_none_refuses_value_returning_and_annotated(workdir: Path) -> None:
    executor = ReturnNoneExecutor()
    before = (workdir / "pkg" / "store.py").read_bytes()
    assert isinstance(executor.apply(ret("pkg/store.py", "one_liner"), workdir), Skip)
    assert isinstance(executor.apply(ret("pkg/store.py", "Store.get_count"), workdir), Skip)
    assert isinstance(executor.apply(ret("pkg/store.py", "missing"), workdir), Skip)
    assert (workdir / "pkg" / "store.py").read_bytes() == before


def test_docstring_skips(workdir: Path) -> None:
    executor = DocstringExecutor()
    first = executor.apply(doc("pkg/store.py", "Store"), workdir)
    assert isinstance(first, Change)
    again = executor.apply(doc("pkg/store.py", "Store"), workdir)
    assert isinstance(again, Skip)
    assert "already" in again.reason
    assert isinstance(executor.apply(doc("pkg/store.py", "Nope"), workdir), Skip)
    assert isinstance(executor.apply(doc("pkg/missing.py", "x"), workdir), Skip)
    assert isinstance(executor.apply(doc("../outside.py", "x"), workdir), Skip)
    assert isinstance(executor.apply(doc("", "x"), workdir), Skip)


def test_broken_edit_is_rolled_back(tmp_path: Path) -> None:
    # A backslash continuation glues the inserted line onto the header: the edit cannot parse.
    path = tmp_path / "odd.py"
    original = b"def f(): \\\n    return 1\n"
    path.write_bytes(original)
    outcome = DocstringExecutor().apply(doc("odd.py", "f"), tmp_path)
    assert isinstance(outcome, Skip)
    assert "restored" in outcome.reason
    assert path.read_bytes() == original


def test_encoding_and_newlines_preserved(tmp_path: Path) -> None:
    path = tmp_path / "crlf.py"
    path.write_bytes("def café(): return 'é'\r\n\r\ndef run():\r\n    pass\r\n".encode())
    assert isinstance(DocstringExecutor().apply(doc("crlf.py", "café"), tmp_path), Change)
    assert isinstance(ReturnNoneExecutor().apply(ret("crlf.py", "run"), tmp_path), Change)
    data = path.read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert data.decode() == (
        'def café():\r\n    """Return the café."""\r\n    return \'é\'\r\n\r\n'
        "def run() -> None:\r\n    pass\r\n"
    )
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"# -*- coding: latin-1 -*-\ndef f():\n    return '\xe9'\n")
    assert isinstance(DocstringExecutor().apply(doc("latin.py", "f"), tmp_path), Change)
    assert latin.read_bytes().endswith(b'    """Return the f."""\n    return \'\xe9\'\n')


def test_supports() -> None:
    assert DocstringExecutor().supports("add_docstring")
    assert not DocstringExecutor().supports("add_return_annotation")
    assert ReturnNoneExecutor().supports("add_return_annotation")
    assert not ReturnNoneExecutor().supports("reduce_complexity")
