"""``ctxstore schema``: print the wire contract's documents, or write them all to a folder."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from contracts import ContextStoreError
from contracts.schema import asyncapi, documents, json_schema, render

__all__ = ["cmd_schema"]


async def cmd_schema(args: argparse.Namespace) -> int:
    if args.write is None:
        document = json_schema() if args.format == "jsonschema" else asyncapi()
        sys.stdout.write(render(document))
        return 0
    for path in await asyncio.to_thread(_write, args.write):
        print(path)
    return 0


def _write(folder: Path) -> list[Path]:
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in documents().items():
            (folder / name).write_text(text, encoding="utf-8")
            written.append(folder / name)
    except OSError as exc:
        raise ContextStoreError(f"cannot write the documents into {folder}: {exc}") from None
    return written
