"""``ctxstore stats``: the figures of a running store, as its Prometheus endpoint gives them."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from actors.cli.common import client, dump, table
from contracts import MetricFamily, MetricSample, StatsReply

__all__ = ["cmd_stats", "format_stats"]


async def cmd_stats(args: argparse.Namespace) -> int:
    async with client(args) as store:
        reply = await store.stats()
    print(dump(reply) if args.json else format_stats(reply))
    return 0


def format_stats(reply: StatsReply) -> str:
    """A table: one row per counter or gauge series, one per histogram series (count,
    average, sum). Labelled series still at zero are left out."""
    head = f"actor {reply.actor or '-'} ({reply.role}), applied seq {reply.applied_seq}"
    rows = [row for family in reply.metrics for row in _rows(family)]
    return f"{head}\n\n{table(rows, ['METRIC', 'LABELS', 'VALUE'])}"


def _rows(family: MetricFamily) -> Iterator[tuple[str, str, str]]:
    if family.type == "histogram":
        yield from _histogram_rows(family)
        return
    shown = [s for s in family.samples if s.value or not s.labels]
    if not shown:  # every label value at zero: one row says so
        name = family.samples[0].name if family.samples else family.name
        yield name, "", "0"
    for sample in shown:
        yield sample.name, _labels(sample), _number(sample.value)


def _histogram_rows(family: MetricFamily) -> Iterator[tuple[str, str, str]]:
    unit = family.name.rsplit("_", 1)[-1]
    series: dict[str, dict[str, float]] = {}
    for sample in family.samples:
        suffix = sample.name[len(family.name) :]
        if suffix in ("_count", "_sum"):
            series.setdefault(_labels(sample), {})[suffix] = sample.value
    observed = {labels: s for labels, s in series.items() if s.get("_count")}
    if not observed:
        yield family.name, "", "count 0"
    for labels, figures in observed.items():
        count, total = figures["_count"], figures.get("_sum", 0.0)
        value = f"count {_number(count)}, avg {_measure(total / count, unit)}"
        yield family.name, labels, f"{value}, sum {_measure(total, unit)}"


def _labels(sample: MetricSample) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")


def _number(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:,.3f}"


def _measure(value: float, unit: str) -> str:
    if unit == "bytes":
        for size, name in ((1 << 20, "MiB"), (1 << 10, "KiB")):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    if unit == "seconds":
        return f"{value:.3f} s"
    return _number(value)
