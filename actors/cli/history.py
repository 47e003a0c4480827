"""``ctxstore`` commands over the store's history: history, diff, export, import, watch,
replay; and the ``--at`` of ``show``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from actors.cli.common import client, parse_point, stop_signals, table
from contracts.history import Change

if TYPE_CHECKING:
    from actors.client import Watch

__all__ = ["register"]


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."


def format_changes(changes: Sequence[Change]) -> str:
    if not changes:
        return "no differences"
    rows = [
        (c.op, c.path, _short(c.before) if c.op != "added" else "", _short(c.after))
        for c in changes
    ]
    return table(rows, ["OP", "FIELD", "BEFORE", "AFTER"])


async def cmd_history(args: argparse.Namespace) -> int:
    async with client(args) as store:
        entries = await store.history(args.evolution_id)
    if args.json:
        print(json.dumps(msgspec.to_builtins(entries), indent=2))
        return 0
    rows = []
    for e in entries:
        what = e.kind if e.stage is None else f"{e.kind} -> {e.stage}"
        outcome = "applied" if e.applied else f"REJECTED {e.code}: {e.reason}"
        rows.append(
            (
                e.seq,
                e.time.isoformat(timespec="milliseconds"),
                what,
                e.writer or "-",
                e.size,
                outcome,
            )
        )
    print(table(rows, ["SEQ", "TIME", "WRITE", "WRITER", "BYTES", "OUTCOME"]))
    return 0


async def cmd_diff(args: argparse.Namespace) -> int:
    async with client(args) as store:
        diff = await store.diff(args.evolution_id, args.a, args.b)
    if args.json:
        print(json.dumps(msgspec.to_builtins(diff), indent=2))
        return 0
    print(f"{diff.evolution_id}: version {diff.a} -> {diff.b}")
    print(format_changes(diff.changes))
    return 0


async def cmd_export(args: argparse.Namespace) -> int:
    async with client(args) as store:
        path = await store.export_context(args.evolution_id, args.output, encrypt=args.encrypt)
    print(path)
    return 0


async def cmd_import(args: argparse.Namespace) -> int:
    async with client(args) as store:
        eid = await store.import_context(args.file, evolution_id=args.as_id, replace=args.replace)
        ctx = await store.get_context(eid)
    print(f"imported {eid} ({ctx.status}, phase {ctx.current_phase}, version {ctx.version})")
    return 0


async def cmd_replay(args: argparse.Namespace) -> int:
    async with client(args) as store:
        result = await store.replay(args.file)
    if args.json:
        print(
            json.dumps(
                {
                    "evolution_id": result.evolution_id,
                    "identical": result.identical,
                    "changes": msgspec.to_builtins(result.changes),
                },
                indent=2,
            )
        )
    else:
        print(f"replayed {result.recorded.evolution_id} as {result.evolution_id}")
        if result.identical:
            print("identical to the recording")
        else:
            print("differences (recorded -> replayed):")
            print(format_changes(result.changes))
    return 0 if result.identical else 1


async def cmd_watch(args: argparse.Namespace) -> int:
    with stop_signals() as signalled:
        async with client(args) as store:
            watch = store.watch(args.evolution_id, args.phase or None, from_start=args.from_start)
            async with watch:
                # A signal closes the watch, which ends the iteration below: no task is left
                # pending or unread, so Ctrl-C exits quietly.
                closer = asyncio.create_task(_close_when(signalled, watch))
                print(f"watching {watch.subject} (Ctrl-C to stop)", file=sys.stderr, flush=True)
                try:
                    async for e in watch:
                        where = f"{e.status or '-'}/{e.current_phase or '-'}"
                        print(
                            f"{e.seq:>8}  {e.time.isoformat(timespec='milliseconds')}  "
                            f"{e.evolution_id}  {e.kind:<20} {where:<24} {e.writer or '-'}",
                            flush=True,
                        )
                finally:
                    closer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await closer
    return 0


async def _close_when(signalled: asyncio.Event, watch: Watch) -> None:
    await signalled.wait()
    await watch.aclose()


def register(sub: Any) -> None:
    """Add the history commands to ``ctxstore``'s subparsers."""

    def add(name: str, run: Callable[[argparse.Namespace], Any], help: str) -> Any:
        parser = sub.add_parser(name, help=help)
        parser.set_defaults(run=f"history:{run.__name__}")
        return parser

    p = add("history", cmd_history, "list every write to a context, applied or rejected")
    p.add_argument("evolution_id", nargs="?", default=None)
    p.add_argument("--json", action="store_true")

    p = add("diff", cmd_diff, "what changed in a context between two versions (SEQ or TIME)")
    p.add_argument("evolution_id")
    p.add_argument("a", type=parse_point)
    p.add_argument("b", type=parse_point, nargs="?", default=None, help="default: now")
    p.add_argument("--json", action="store_true")

    p = add("export", cmd_export, "write a context's bundle (history + hash chain) to a file")
    p.add_argument("evolution_id", nargs="?", default=None)
    p.add_argument("-o", "--output", type=Path, default=None, help="file (default: export path)")
    p.add_argument(
        "--encrypt", action="store_true", help="seal it with CONTEXT_STORE_ENCRYPTION_KEY"
    )

    p = add("import", cmd_import, "load a bundle into the store")
    p.add_argument("file", type=Path)
    p.add_argument("--as", dest="as_id", default=None, help="import under this id")
    p.add_argument("--replace", action="store_true", help="replace an existing context")

    p = add("watch", cmd_watch, "print applied writes live until Ctrl-C")
    p.add_argument("evolution_id", nargs="?", default=None, help="default: every context")
    p.add_argument("--phase", action="append", help="only these write kinds (repeatable)")
    p.add_argument("--from-start", action="store_true", help="replay recorded events first")

    p = add("replay", cmd_replay, "re-apply a bundle's writes and report differences")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
