"""``python -m bench [--quick] [--only NAME ...] [--big] [--full] [--out FILE]``"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Figure

BENCHES = (
    "latency",
    "writes",
    "partitions",
    "durable",
    "recovery",
    "memory",
    "parallel",
    "evolve",
)


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import nats

    from bench.peers import peer_versions
    from broker import find_server_binary

    server_version = os.popen(f"{find_server_binary()} --version").read().strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nats_py": getattr(nats, "__version__", None) or _dist("nats-py"),
        "msgspec": _dist("msgspec"),
        "nats_server": server_version,
        "peers": peer_versions(),
    }


def _dist(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "B" or unit == "B/context":
        return f"{value:,.0f} {unit}"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "baseline", "ratio", "target", "met")]
    for f in figures:
        rows.append(
            (
                f.name,
                _fmt(f.value, f.unit),
                f"{_fmt(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline is not None else "",
                f"{f.ratio:.2f}x" if f.ratio is not None else "",
                f.target,
                "" if f.met is None else ("yes" if f.met else "NO"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> list[Figure]:
    from bench.evolve import run_evolve
    from bench.latency import run_latency
    from bench.memory import run_memory
    from bench.parallel import run_parallel
    from bench.partitions import run_partitions
    from bench.recovery import run_recovery
    from bench.writes import run_durable, run_writes

    runners: dict[str, Callable[[Path], Awaitable[list[Figure]]]] = {
        "latency": lambda tmp: run_latency(tmp, quick=args.quick),
        "writes": lambda tmp: run_writes(tmp, quick=args.quick),
        "partitions": lambda tmp: run_partitions(tmp, quick=args.quick),
        "durable": lambda tmp: run_durable(tmp, quick=args.quick),
        "recovery": lambda tmp: run_recovery(tmp, quick=args.quick, big=args.big, full=args.full),
        "memory": lambda tmp: run_memory(tmp, quick=args.quick, full=args.full),
        "parallel": lambda tmp: run_parallel(tmp, quick=args.quick),
        "evolve": lambda tmp: run_evolve(tmp, quick=args.quick),
    }
    figures: list[Figure] = []
    for name in args.only or BENCHES:
        with tempfile.TemporaryDirectory(prefix=f"ctxbench-{name}-") as tmp:
            started = time.perf_counter()
            print(f"== {name} ...", file=sys.stderr, flush=True)
            got = await runners[name](Path(tmp))
            for f in got:
                f.extra.setdefault("bench", name)
            figures += got
            print(table(got), file=sys.stderr)
            print(f"   ({time.perf_counter() - started:.1f}s)", file=sys.stderr, flush=True)
    return figures


def _merged(previous: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """A partial run (``--only``) replaces its benchmarks' figures in the results file and
    keeps the others', each figure stamped with the date of the run that measured it: the
    charts and the README's table read one file, which one benchmark alone must not empty."""
    ran = set(run["options"]["only"])
    kept = [
        {"date": previous.get("date"), **f}
        for f in previous.get("figures", [])
        if f.get("bench") not in ran
    ]
    fresh = [{"date": run["date"], **f} for f in run["figures"]]
    return {**run, "figures": kept + fresh}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (about a minute)")
    parser.add_argument("--only", action="append", choices=BENCHES, help="run only these")
    parser.add_argument("--big", action="store_true", help="recovery: add 100,000 contexts")
    parser.add_argument(
        "--full", action="store_true", help="recovery: add 100,000 contexts / 1,000,000 writes"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    import uvloop

    figures = uvloop.run(_run(args))
    print(table(figures))
    document = {
        "date": started.isoformat(timespec="seconds"),
        "machine": _machine(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "figures": [
            {
                "name": f.name,
                "value": f.value,
                "unit": f.unit,
                "baseline": f.baseline,
                "baseline_name": f.baseline_name,
                "ratio": f.ratio,
                "target": f.target,
                "met": f.met,
                **f.extra,
            }
            for f in figures
        ],
    }
    if args.only and args.out.exists():
        document = _merged(json.loads(args.out.read_text(encoding="utf-8")), document)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
