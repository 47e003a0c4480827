"""What the ``ctxstore`` commands share: the client they use, tables, signals, points."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from actors.client import SharedContextStore

__all__ = ["client", "dump", "parse_point", "table", "wait_for_signal"]


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def dump(value: Any) -> str:
    return json.dumps(msgspec.to_builtins(value), indent=2, sort_keys=False)


def client(args: argparse.Namespace) -> SharedContextStore:
    return SharedContextStore(args.nats_url, home=args.home, name="ctxstore-cli")


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def parse_point(text: str) -> int | datetime:
    """A stream sequence (digits) or an ISO 8601 time (naive means UTC)."""
    if text.isdigit():
        return int(text)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a sequence number nor an ISO time (2025-08-17T12:00:00Z)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
