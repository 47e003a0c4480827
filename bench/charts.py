"""``python -m bench.charts RESULTS.json [--out DIR]``: the results drawn as PNG charts.

Drawn from a results file of ``python -m bench`` alone (nothing is re-run), so charts can be
redrawn from any committed run. Each chart is titled with what it compares, the run's date
and machine, and the caveat that goes with every figure here: the machine has 2 cores shared
with other work, so the ratios to baselines measured in the same run are the claim, not the
absolute figures. A chart whose figures are not in the file (a run with ``--only``) is skipped
and said so. Needs matplotlib (``pip install '.[bench]'``); draws with the Agg backend.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure as Chart

__all__ = ["CHARTS", "draw_all"]

Doc = dict[str, Any]
Fig = dict[str, Any]

CAVEAT = (
    "The cores are shared with other work (noisy): the ratios to baselines measured in the same"
    " run are the claim, not the absolute figures."
)
OURS, BASE, REDIS, GRAPH = "#1f6fb4", "#9a9a9a", "#c0392b", "#8e44ad"
COLORS = {
    "api": OURS,
    "raw": "#6fa8dc",
    "echo": BASE,
    "echo_decode": "#c8c8c8",
    "redis": REDIS,
    "langgraph": GRAPH,
}
LATENCY_ROWS = {
    "api": "this store: get_context\n(client API, typed decode)",
    "raw": "this store: raw request,\nno decode",
    "echo": "bare NATS echo of\nthe same bytes",
    "echo_decode": "bare NATS echo +\nthe same decode",
    "redis": "Redis GET of the same\nJSON + the same decode",
    "langgraph": "LangGraph SQLite saver\naget_tuple",
}


def _subtitle(doc: Doc) -> str:
    m = doc.get("machine", {})
    date = str(doc.get("date", "?")).replace("T", " ").replace("+00:00", " UTC")
    return f"run {date}, {m.get('cpu', '?')}, {m.get('cores', '?')} cores. {CAVEAT}"


def _find(doc: Doc, test: Callable[[str], bool], bench: str | None = None) -> Fig | None:
    for f in doc.get("figures", []):
        if (bench is None or f.get("bench") == bench) and test(f["name"]):
            return dict(f)
    return None


def _title(chart: Chart, what: str, doc: Doc) -> None:
    """The title and the run's caveat above the panels, laid out in inches from the top."""
    height = chart.get_figheight()
    lines = textwrap.wrap(_subtitle(doc), width=int(chart.get_figwidth() * 15))
    chart.text(0.5, 1 - 0.12 / height, what, ha="center", va="top", fontsize=13, fontweight="bold")
    chart.text(
        0.5,
        1 - 0.45 / height,
        "\n".join(lines),
        ha="center",
        va="top",
        fontsize=8.5,
        color="#444",
    )
    chart.tight_layout(rect=(0, 0, 1, 1 - (0.55 + 0.16 * len(lines)) / height))


# Latency -----------------------------------------------------------------------------------


def _latency_panel(ax: Axes, fig: Fig, heading: str) -> None:
    quantiles: dict[str, list[float]] = fig["quantiles_us"]
    rows = [k for k in LATENCY_ROWS if k in quantiles]
    stats = [
        {
            "label": LATENCY_ROWS[k],
            "whislo": quantiles[k][1],
            "q1": quantiles[k][25],
            "med": quantiles[k][50],
            "q3": quantiles[k][75],
            "whishi": quantiles[k][99],
            "fliers": [],
        }
        for k in rows
    ]
    boxes = ax.bxp(
        stats, orientation="horizontal", showfliers=False, patch_artist=True, widths=0.55
    )
    for patch, k in zip(boxes["boxes"], rows, strict=True):
        patch.set_facecolor(COLORS[k])
        patch.set_alpha(0.85)
    for line in boxes["medians"]:
        line.set_color("black")
    echo = quantiles["echo"][50]
    top = max(quantiles[k][99] for k in rows)
    for y, k in enumerate(rows, start=1):
        p50, p99 = quantiles[k][50], quantiles[k][99]
        ax.text(
            top * 1.03,
            y,
            f"p50 {p50:,.0f} us ({p50 / echo:.2f}x echo)\np99 {p99:,.0f} us",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(0, top * 1.45)
    ax.invert_yaxis()
    ax.set_xlabel("request latency, us (box p25-p75, line p50, whiskers p1-p99)")
    ax.set_title(heading, fontsize=10.5)
    ax.grid(axis="x", alpha=0.3)


def latency(doc: Doc) -> Chart | None:
    spec = _find(doc, lambda n: n == "get_context p50 (client API)", "latency")
    real = _find(doc, lambda n: n.startswith("get_context p50, a real evolution"), "latency")
    panels = [f for f in (spec, real) if f is not None and "quantiles_us" in f]
    if not panels:
        return None
    chart, axes = plt.subplots(len(panels), 1, figsize=(11, 4.3 * len(panels)), squeeze=False)
    for ax, fig in zip(axes[:, 0], panels, strict=True):
        size = fig["reply_bytes"]
        size = size["get"] if isinstance(size, dict) else size
        if fig is real:
            heading = (
                f"a real evolution's context (bench/real.py), {size:,} B of JSON: "
                f"{fig['samples']:,} reads each, alternating blocks"
            )
        else:
            heading = (
                f"spec-sized context (50 issues/improvements/tasks), {size:,} B of JSON: "
                f"{fig['samples']:,} reads each, alternating blocks"
            )
        _latency_panel(ax, fig, heading)
    _title(chart, "Reading a whole context: this store, the bare NATS echo, Redis, LangGraph", doc)
    return chart


# Writes ------------------------------------------------------------------------------------


def _bars(ax: Axes, bars: list[tuple[str, list[float], str]], base: float, heading: str) -> None:
    medians = [_median(r) for _, r, _ in bars]
    lows = [m - min(r) for m, (_, r, _) in zip(medians, bars, strict=True)]
    highs = [max(r) - m for m, (_, r, _) in zip(medians, bars, strict=True)]
    xs = range(len(bars))
    ax.bar(
        xs,
        medians,
        yerr=[lows, highs],
        color=[c for _, _, c in bars],
        capsize=4,
        alpha=0.9,
        error_kw={"elinewidth": 1, "ecolor": "#333"},
    )
    for x, m, hi in zip(xs, medians, highs, strict=True):
        ax.text(
            x, m + hi, f"{m:,.0f}/s\n{m / base:.2f}x bare", ha="center", va="bottom", fontsize=8
        )
    ax.set_xticks(list(xs), [label for label, _, _ in bars], fontsize=7.5)
    ax.set_ylim(0, max(m + h for m, h in zip(medians, highs, strict=True)) * 1.25)
    ax.set_ylabel("writes/s (median round; bar: min-max)")
    ax.set_title(heading, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def writes(doc: Doc) -> Chart | None:
    piped = _find(doc, lambda n: n.startswith("applied writes/s"), "writes")
    durable = _find(doc, lambda n: n.startswith("durable applied writes/s"), "durable")
    if piped is None and durable is None:
        return None
    widths = [w for p, w in ((piped, 3), (durable, 5)) if p is not None]
    chart, axes = plt.subplots(
        1,
        len(widths),
        figsize=(1.7 * sum(widths) + 1, 6.2),
        squeeze=False,
        gridspec_kw={"width_ratios": widths},
    )
    column = iter(axes[0])
    if piped is not None:
        bars = [
            ("this store:\napplied (actor folded,\nordered, audited)", piped["store_rounds"], OURS),
            ("bare JetStream\npublish_async\n(acked, not applied)", piped["bare_rounds"], BASE),
        ]
        redis = _find(doc, lambda n: "against redis, pipelined" in n, "writes")
        if redis is not None:
            bars.append(
                (
                    "Redis HSET, pipelined,\nAOF fsync each second\n(no order, history\nor checks)",
                    redis["peer_rounds"],
                    REDIS,
                )
            )
        _bars(
            next(column),
            bars,
            _median(piped["bare_rounds"]),
            f"pipelined: 4 writers, windows of 256, {piped['writes_per_round']:,} writes a round",
        )
    if durable is not None:
        rounds = durable["rounds"]
        bars = [
            ("this store:\nclient API,\nunconfirmed", rounds["unconfirmed"], OURS),
            ("this store:\nclient API,\nconfirmed applied", rounds["confirmed"], "#134a7a"),
            ("bare JetStream\nawaited publish", rounds["bare"], BASE),
        ]
        if rounds.get("redis"):
            bars.append(
                (
                    "Redis HSET awaited,\nAOF fsync always\n(no order, history\nor checks)",
                    rounds["redis"],
                    REDIS,
                )
            )
        if rounds.get("langgraph"):
            bars.append(
                (
                    "LangGraph SQLite\nsaver: aput per write\n(WAL, fsync\nper commit)",
                    rounds["langgraph"],
                    GRAPH,
                )
            )
        _bars(
            next(column),
            bars,
            _median(rounds["bare"]),
            f"durable (fsync before the ack): 4 writers, each write awaited, "
            f"{durable['writes_per_round']:,} a round",
        )
    _title(chart, "Writes per second: this store, bare JetStream, Redis, LangGraph", doc)
    return chart


# Memory ------------------------------------------------------------------------------------


def memory(doc: Doc) -> Chart | None:
    real = _find(doc, lambda n: n.startswith("memory per real evolution context"), "memory")
    kinds = [
        (f, label)
        for f, label in (
            (_find(doc, lambda n: "spec-sized contexts (RSS)" in n, "memory"), "spec-sized"),
            (_find(doc, lambda n: "scaled (50 issues/tasks) contexts" in n, "memory"), "scaled"),
        )
        if f is not None
    ]
    if real is None and not kinds:
        return None
    panels: list[tuple[str, list[tuple[str, float, str]], float, str]] = []
    if real is not None:
        r = real["real"]
        redis = _find(doc, lambda n: n.startswith("  ... against redis: the same real"), "memory")
        redis_bar = (
            [
                (
                    "Redis: the same\ncontexts as JSON\nvalues (used_memory)",
                    redis["peer_bytes_per_context"],
                    REDIS,
                )
            ]
            if redis is not None
            else []
        )
        panels.append(
            (
                f"real evolution contexts\n({r['contexts']:,} held)",
                [
                    ("held by the store\n(RSS per context)", r["bytes_per_context"], OURS),
                    ("its JSON", r["json_bytes"], BASE),
                    ("its JSON\ngzipped", r["gzip_json_bytes"], "#c8c8c8"),
                    *redis_bar,
                ],
                r["gzip_json_bytes"],
                "gzipped JSON",
            )
        )
    for f, label in kinds:
        rss, traced = f["rss"], f["tracemalloc"]
        panels.append(
            (
                f"{label} contexts\n({rss['contexts']:,} held)",
                [
                    ("held by the store\n(RSS per context)", rss["bytes_per_context"], OURS),
                    (
                        "after each was\nread once\n(reply cache)",
                        rss["with_reply_cache_per_context"],
                        "#6fa8dc",
                    ),
                    ("Python objects\n(tracemalloc)", traced["bytes_per_context"], "#9fc5e8"),
                    ("its JSON", rss["json_bytes"], BASE),
                ],
                rss["json_bytes"],
                "JSON",
            )
        )
    chart, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 5.6), squeeze=False)
    for ax, (heading, bars, base, base_name) in zip(axes[0], panels, strict=True):
        xs = range(len(bars))
        ax.bar(xs, [v for _, v, _ in bars], color=[c for _, _, c in bars], alpha=0.9)
        for x, (_, v, _) in zip(xs, bars, strict=True):
            ax.text(
                x,
                v,
                f"{v:,.0f} B\n{v / base:.2f}x {base_name}",
                ha="center",
                va="bottom",
                fontsize=7.5,
            )
        ax.set_xticks(list(xs), [label for label, _, _ in bars], fontsize=7.5)
        ax.set_ylim(0, max(v for _, v, _ in bars) * 1.25)
        ax.set_ylabel("bytes per context")
        ax.set_title(heading, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    _title(chart, "Memory per context held by the store actor, against the context's size", doc)
    return chart


# Start-up ----------------------------------------------------------------------------------


def startup(doc: Doc) -> Chart | None:
    history = _find(doc, lambda n: "writes of history" in n, "recovery")
    if history is None or "full_replay_startup_s" not in history:
        return None
    writes_ = history["writes"]
    chart, ax = plt.subplots(figsize=(10, 5.8))
    ax.plot(
        writes_,
        history["full_replay_startup_s"],
        "o-",
        color=REDIS,
        label="1,000 contexts: actor start-up replaying the whole stream (no snapshot)",
    )
    ax.plot(
        writes_,
        history["bare_replay_s"],
        "s--",
        color=BASE,
        label="1,000 contexts: bare ordered-consumer replay of the stream (baseline)",
    )
    ax.plot(
        writes_,
        history["startup_s"],
        "o-",
        color=OURS,
        label="1,000 contexts: actor start-up from a snapshot",
    )
    for x, y in zip(writes_, history["startup_s"], strict=True):
        ax.annotate(
            f"{y * 1000:,.0f} ms",
            (x, y),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
            fontsize=8,
            color=OURS,
        )
    for x, y in zip(writes_, history["full_replay_startup_s"], strict=True):
        ax.annotate(
            f"{y:,.2f} s",
            (x, y),
            textcoords="offset points",
            xytext=(-8, 6),
            ha="right",
            fontsize=8,
            color=REDIS,
        )
    big = _find(doc, lambda n: n == "actor start-up, 10,000 contexts (no snapshot)", "recovery")
    big_snap = _find(
        doc, lambda n: n.startswith("actor start-up from a snapshot, 10,000"), "recovery"
    )
    if big is not None and big_snap is not None:
        ax.plot(
            [100_000],
            [big["value"]],
            "D",
            mfc="none",
            color=REDIS,
            ms=8,
            label="10,000 contexts / 100,000 writes, no snapshot",
        )
        ax.plot(
            [100_000],
            [big_snap["value"]],
            "D",
            mfc="none",
            color=OURS,
            ms=8,
            label="10,000 contexts / 100,000 writes, from a snapshot",
        )
    ratio = history["startup_s"][-1] / history["startup_s"][0]
    full = history["full_replay_startup_s"][-1] / history["full_replay_startup_s"][0]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(writes_, [f"{w:,}" for w in writes_])
    ax.minorticks_off()
    lows = [*history["startup_s"], big_snap["value"] if big_snap else 1.0]
    highs = [*history["full_replay_startup_s"], big["value"] if big else 0.0]
    ax.set_ylim(min(lows) * 0.5, max(highs) * 2)
    ax.set_xlim(writes_[0] * 0.8, writes_[-1] * 1.25)
    ax.set_xlabel(
        "writes in the stream (history length); the same "
        f"{history.get('contexts', 1000):,} contexts at every point"
    )
    ax.set_ylabel("seconds until the actor serves (median of runs)")
    ax.set_title(
        f"{writes_[-1]:,} against {writes_[0]:,} writes of history: from a snapshot "
        f"{ratio:.2f}x, replaying everything {full:.1f}x",
        fontsize=10,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="center right")
    _title(chart, "Start-up against history length, with and without a snapshot", doc)
    return chart


CHARTS: dict[str, Callable[[Doc], Chart | None]] = {
    "latency": latency,
    "writes": writes,
    "memory": memory,
    "startup": startup,
}


def draw_all(doc: Doc, out: Path) -> dict[str, Path | None]:
    """Every chart the results hold, as ``out/<name>.png``; None for those it does not."""
    out.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Path | None] = {}
    for name, draw in CHARTS.items():
        chart = draw(doc)
        if chart is None:
            drawn[name] = None
            continue
        path = out / f"{name}.png"
        chart.savefig(path, dpi=110)
        plt.close(chart)
        drawn[name] = path
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.charts", description=__doc__)
    parser.add_argument("results", type=Path, help="a results JSON of python -m bench")
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default: the JSON's)")
    args = parser.parse_args(argv)
    doc = json.loads(args.results.read_text(encoding="utf-8"))
    for name, path in draw_all(doc, args.out or args.results.parent).items():
        print(f"{name}: {path}" if path else f"{name}: skipped (its figures are not in the file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
