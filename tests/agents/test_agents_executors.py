"""Executors: ruff's safe fixes, libcst edits, the optional model, and what they refuse."""

from __future__ import annotations

import ast
import textwrap

import pytest
from model_server import model_endpoint

from actors.evolution.agents.logic import (
    Edited,
    ModelExecutor,
    ReturnNoneExecutor,
    RuffSimplifyExecutor,
    Skip,
)
from actors.evolution.agents.logic.edits import EditError, insert_docstring
from actors.evolution.agents.logic.summaries import restates_name

NESTED = textwrap.dedent(
    """\
    def target(a, b):
        # the reason for this check
        if a:
            if b:
                return 1  # keep me
        return 2


    def other(a, b):
        if a:
            if b:
                return 1
        return 2
    """
)


def task(action: str, symbol: str, file: str = "m.py") -> dict[str, object]:
    return {"id": "task-1", "action": action, "file": file, "symbol": symbol, "line": None}


def test_ruff_safe_fixes_apply_inside_the_target_function_only() -> None:
    result = RuffSimplifyExecutor().edit(task("simplify", "target"), NESTED, "m.py")
    assert isinstance(result, Edited), result
    assert "if a and b:" in result.text
    assert "# the reason for this check" in result.text
    assert "# keep me" in result.text
    # The other function, with the same pattern, is not part of the task.
    assert result.text.split("def other")[1] == NESTED.split("def other")[1]
    assert result.measures == {"complexity_before": 3, "complexity_after": 2}
    assert "SIM102" in result.detail


def test_no_safe_transformation_is_deferred_not_faked() -> None:
    source = "def f(a):\n" + "".join(f"    if a == {i}:\n        return {i}\n" for i in range(11))
    result = RuffSimplifyExecutor().edit(task("reduce_complexity", "f"), source, "m.py")
    assert isinstance(result, Skip)
    assert result.deferred
    assert "no safe transformation" in result.reason
    assert "complexity 12" in result.reason


def test_return_none_only_where_certain_and_undecorated() -> None:
    source = textwrap.dedent(
        """\
        import app


        def plain(x):  # comment stays
            print(x)


        @app.get("/")
        def route():
            print(1)


        def value():
            return 1
        """
    )
    executor = ReturnNoneExecutor()
    done = executor.edit(task("add_return_annotation", "plain"), source, "m.py")
    assert isinstance(done, Edited)
    assert "def plain(x) -> None:  # comment stays" in done.text
    route = executor.edit(task("add_return_annotation", "route"), source, "m.py")
    assert isinstance(route, Skip)
    assert "decorated" in route.reason
    value = executor.edit(task("add_return_annotation", "value"), source, "m.py")
    assert isinstance(value, Skip)
    assert "may return a value" in value.reason


def test_libcst_docstring_keeps_layout_and_refuses_other_changes() -> None:
    source = "class A:\n    def f(self): return 1  # why\n"
    text = insert_docstring(source, ast.parse(source), "A.f", "Give the answer.", None)
    assert (
        text
        == 'class A:\n    def f(self):\n        """Give the answer."""\n        return 1  # why\n'
    )
    with pytest.raises(EditError, match="already has a docstring"):
        insert_docstring(text, ast.parse(text), "A.f", "Again.", None)


def test_docstrings_that_restate_the_name_are_recognised() -> None:
    assert restates_name("Return the int to bytes.", "int_to_bytes")
    assert restates_name("The formats module.", "formats")
    assert restates_name("Handle the cli.", "cli")
    assert not restates_name("Encode an integer as big-endian bytes.", "int_to_bytes")


GRADES = (
    "def letter(score):\n"
    + "".join(
        f"    if score >= {b}:\n        return '{c}'\n"
        for b, c in zip(range(90, -1, -10), "ABCDEFGHIJ", strict=True)
    )
    + "    return 'K'\n\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n"
    + "\n\ndef total(xs):\n    return sum(xs)\n"
)
TABLE = (
    "```python\ndef letter(score):\n"
    "    for bound, grade in zip(range(90, -1, -10), 'ABCDEFGHIJ'):\n"
    "        if score >= bound:\n            return grade\n    return 'K'\n```"
)


def test_model_executor_writes_checked_docstrings_and_refactors() -> None:
    replies = {
        "`mean`": "Average of the scores; raises ZeroDivisionError for an empty list.",
        "`total`": "Return the total.",
        "Lower the cyclomatic complexity": TABLE,
    }
    with model_endpoint(replies) as (url, prompts):
        executor = ModelExecutor.from_env({"CTXSTORE_MODEL_URL": url, "CTXSTORE_MODEL": "m"})
        assert executor is not None
        good = executor.edit(task("add_docstring", "mean"), GRADES, "g.py")
        assert isinstance(good, Edited)
        assert (
            '    """Average of the scores; raises ZeroDivisionError for an empty list."""'
            in good.text
        )
        echo = executor.edit(task("add_docstring", "total"), GRADES, "g.py")
        assert isinstance(echo, Skip)
        assert "restates the name" in echo.reason
        refactor = executor.edit(task("reduce_complexity", "letter"), GRADES, "g.py")
        assert isinstance(refactor, Edited), refactor
        assert refactor.measures == {"complexity_before": 11, "complexity_after": 3}
        # The same prompt again (bisection re-applies edits) costs no second request.
        asked = len(prompts)
        executor.edit(task("reduce_complexity", "letter"), GRADES, "g.py")
        assert len(prompts) == asked


def test_model_executor_is_off_without_configuration() -> None:
    assert ModelExecutor.from_env({}) is None


def test_model_replies_are_fetched_concurrently_ahead_of_the_edits() -> None:
    source = "".join(f"def f{n}(xs):\n    return sorted(xs)[{n}]\n\n\n" for n in range(3))
    replies = {f"`f{n}`": f"Pick the element of rank {n} from the sorted input." for n in range(3)}
    tasks = [task("add_docstring", f"f{n}") for n in range(3)]
    # The endpoint answers only once all three requests are in flight together.
    with model_endpoint(replies, together=3) as (url, prompts):
        executor = ModelExecutor.from_env({"CTXSTORE_MODEL_URL": url})
        assert executor is not None
        executor.prefetch([(t, source, "m.py") for t in tasks])
        assert len(prompts) == 3
        text = source
        for t in tasks:
            done = executor.edit(t, text, "m.py")
            assert isinstance(done, Edited), done
            text = done.text
        assert len(prompts) == 3  # every edit used a reply fetched ahead
    assert text.count('"""Pick the element of rank') == 3


def test_fixes_that_only_restyle_are_not_edits_worth_keeping() -> None:
    source = textwrap.dedent(
        """\
        def restyle(a):
            if a > 1:
                return 1
            elif a > 0:
                return 2
            return 3


        def dedent(a):
            if a:
                return 1
            else:
                print(a)
                return 2
        """
    )
    executor = RuffSimplifyExecutor()
    restyle = executor.edit(task("simplify", "restyle"), source, "m.py")
    assert isinstance(restyle, Skip)  # elif -> if after a return: same indentation
    assert restyle.deferred
    dedent = executor.edit(task("simplify", "dedent"), source, "m.py")
    assert isinstance(dedent, Edited)
    assert "    else:" not in dedent.text
    assert "\n    print(a)\n    return 2\n" in dedent.text
