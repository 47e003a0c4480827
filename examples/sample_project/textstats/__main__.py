"""Command line: ``python -m textstats FILE...``."""

import argparse
import sys
from pathlib import Path

from textstats.report import print_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textstats", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path, help="text files to report on")
    parser.add_argument("--width", type=int, default=60, help="report width")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for path in args.files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"textstats: {exc}", file=sys.stderr)
            return 1
        print_report(path.name, text, args.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
