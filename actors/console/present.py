"""How the console shows things: the template environment, its filters, and the one-line
summaries of a comparison's sides (the same counts ``ctxstore evolve`` prints)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from contracts import Comparison

__all__ = ["environment", "side_summaries"]

_SHORT: Final = 80


def _json(value: Any) -> str:
    return json.dumps(msgspec.to_builtins(value), indent=2, ensure_ascii=False)


def _short(value: Any, width: int = _SHORT) -> str:
    text = value if isinstance(value, str) else json.dumps(msgspec.to_builtins(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def _clock(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value) if isinstance(value, int | str) else _short(value, 40)


def _signed(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _number(value)
    if value == 0:
        return "0"
    return ("+" if value > 0 else "-") + _number(abs(value))


def _sign(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or value == 0:
        return "zero"
    return "up" if value > 0 else "down"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _query(params: dict[str, Any]) -> str:
    """``?a=1&b=2`` of the parameters that are set, or an empty string."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("actors.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        json=_json,
        short=_short,
        clock=_clock,
        when=_when,
        iso=_iso,
        number=_number,
        signed=_signed,
        sign=_sign,
        percent=_percent,
    )
    env.globals["query"] = _query
    return env


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | dict) else 0


def side_summaries(c: Comparison, evaluation: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Label/value lines for each side of the three-way comparison (after: what was done, as
    measured after implementation, and the evaluator's verdict); a side not written yet has
    none."""
    before, plan, impl, after = c.before, c.plan, c.implementation, c.after
    sides: dict[str, list[tuple[str, str]]] = {"before": [], "plan": [], "after": []}
    if before:
        sides["before"] = [
            ("files analysed", _number(before.get("files_analyzed"))),
            ("issues", str(_count(before.get("issues")))),
            ("improvements proposed", str(_count(before.get("improvements")))),
        ]
    if plan:
        sides["plan"] = [
            ("tasks", str(_count(plan.get("tasks")))),
            ("estimated impact", _number(plan.get("estimated_impact"))),
            ("dependencies", str(_count(plan.get("dependencies")))),
        ]
    if impl:
        listed = impl.get("changes")
        changes: list[Any] = listed if isinstance(listed, list) else []
        skipped = sum(1 for ch in changes if isinstance(ch, dict) and ch.get("type") == "skipped")
        sides["after"] += [
            ("changes", f"{len(changes) - skipped} in {_count(impl.get('modified_files'))} files"),
            ("skipped", str(skipped)),
            ("rollback points", str(_count(impl.get("rollback_points")))),
        ]
    if after:
        sides["after"].append(("files measured", _number(after.get("files_analyzed"))))
        tests = after.get("tests")
        if isinstance(tests, dict) and tests:
            shown = ", ".join(f"{v} {k}" for k, v in tests.items() if isinstance(v, int))
            sides["after"].append(("tests", shown or "—"))
    if evaluation:
        listed = evaluation.get("goals_achieved")
        goals: list[Any] = listed if isinstance(listed, list) else []
        achieved = sum(1 for g in goals if not isinstance(g, dict) or bool(g.get("achieved")))
        rate = evaluation.get("success_rate")
        sides["after"] += [
            ("goals achieved", f"{achieved} of {len(goals)}"),
            ("success rate", _percent(float(rate)) if isinstance(rate, int | float) else "—"),
        ]
    return sides
