"""``ctxstore``: run the store, and look at what it holds.

With no ``--nats-url`` (and no ``NATS_URL``), every command uses the local store directory
(``--home``, default ``$CTXSTORE_HOME`` or ``~/.local/share/ctxstore``) and its one server:
``serve`` runs it in the foreground; other commands use the one running, or start one in the
background that stops about 1.5 s after its last user (``actors.client.local``).

Each command's module is imported when the command runs, so ``ctxstore list`` loads the client
and nothing of the store actor or the evolution app.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from actors.cli.common import parse_point
from actors.cli.history import register as register_history_commands
from actors.client.local import default_home
from contracts import AGENT_NAMES, ContextStoreError

__all__ = ["main"]

Command = Callable[[argparse.Namespace], Awaitable[int]]


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, before or after its name. A command's copy has no
    defaults, so it never overwrites what was given before the command."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    home = default_home()
    parser.add_argument(
        "--home",
        type=Path,
        default=default(home),
        help=f"local store directory (default: {home})",
    )
    parser.add_argument(
        "--nats-url",
        default=default(None),
        help="use this NATS server (default: $NATS_URL or local)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="log to stderr"
    )
    for flag, what in (
        ("--creds", "a .creds file to sign in with (default: $NATS_CREDS)"),
        ("--nkey", "an nkey seed file to sign in with (default: $NATS_NKEY)"),
        ("--tls-ca", "CA to verify the server with (default: $NATS_CA)"),
        ("--tls-cert", "client certificate (default: $NATS_CERT)"),
        ("--tls-key", "client certificate's key (default: $NATS_KEY)"),
    ):
        parser.add_argument(flag, default=default(None), help=what)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctxstore", description=__doc__.splitlines()[0])
    _global_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server and the store actor until stopped")
    serve.add_argument("--port", type=int, default=0, help="client port (default: any free)")
    serve.add_argument("--store-dir", type=Path, default=None, help="server store directory")
    serve.add_argument("--backend", choices=["memory", "file"], default=None)
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="P",
        help="serve Prometheus metrics on http://HOST:P/metrics (0: any free port)",
    )
    serve.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address of the metrics endpoint (default: 127.0.0.1; 0.0.0.0 for every one)",
    )
    serve.add_argument(
        "--auth",
        type=Path,
        default=None,
        metavar="DIR",
        help="accounts and users from 'ctxstore auth init DIR': one actor per tenant",
    )
    serve.add_argument(
        "--partition",
        type=int,
        default=None,
        metavar="K",
        help="with --nats-url and CONTEXT_STORE_PARTITIONS > 1: serve partition K only "
        "(default: every partition, in this process)",
    )
    # The server a URL-less client starts for the local store directory.
    serve.add_argument("--exit-when-unused", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(run="serve:cmd_serve")

    lst = sub.add_parser("list", help="list contexts")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(run="contexts:cmd_list")

    show = sub.add_parser("show", help="show one context (default: the newest)")
    show.add_argument("evolution_id", nargs="?", default=None)
    show.add_argument("--json", action="store_true")
    show.add_argument(
        "--at", type=parse_point, default=None, help="as it was at a sequence or ISO time"
    )
    show.set_defaults(run="contexts:cmd_show")
    register_history_commands(sub)

    evolve = sub.add_parser("evolve", help="run an evolution of a Python project")
    evolve.add_argument("path", help="the project to evolve")
    evolve.add_argument(
        "--focus",
        nargs="+",
        default=["documentation"],
        help="focus areas (e.g. documentation complexity typing)",
    )
    evolve.add_argument(
        "--apply", action="store_true", help="write the result over the project's files"
    )
    evolve.add_argument("--workdir", type=Path, default=None, help="where the working copy goes")
    evolve.add_argument("--agent-timeout", type=float, default=120.0)
    evolve.add_argument(
        "--remote-agents",
        action="store_true",
        help="use agents started with 'ctxstore agent NAME' instead of in-process ones",
    )
    evolve.add_argument(
        "--verify",
        default=None,
        metavar="CMD",
        help="command that runs the project's tests on the working copy (default: the "
        "project's pytest suite when one is found; 'none' to skip verification)",
    )
    evolve.add_argument("--verify-timeout", type=float, default=600.0, help="seconds per test run")
    evolve.add_argument("--json", action="store_true", help="print the results as JSON")
    evolve.set_defaults(run="evolve:cmd_evolve")

    rollback = sub.add_parser(
        "rollback", help="bring an evolution's working copy back to a rollback point"
    )
    rollback.add_argument("evolution_id")
    rollback.add_argument("checkpoint", help="e.g. checkpoint-1 (before any edit)")
    rollback.set_defaults(run="evolve:cmd_rollback")

    agent = sub.add_parser("agent", help="run one agent against a shared server")
    agent.add_argument("name", choices=AGENT_NAMES)
    agent.set_defaults(run="evolve:cmd_agent")

    schema = sub.add_parser(
        "schema", help="print the wire contract: a JSON Schema of every message, or AsyncAPI 3"
    )
    schema.add_argument("--format", choices=["jsonschema", "asyncapi"], default="jsonschema")
    schema.add_argument(
        "--write",
        type=Path,
        default=None,
        metavar="DIR",
        help="write both documents into DIR instead (the repository keeps them in "
        "contracts/schemas)",
    )
    schema.set_defaults(run="schema:cmd_schema")

    console = sub.add_parser(
        "console", help="serve the web console (and its GraphQL API) on the store"
    )
    console.add_argument(
        "--port", type=int, default=8765, help="HTTP port (default: 8765; 0: any free port)"
    )
    console.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; the console has no login)",
    )
    console.add_argument(
        "--tenant",
        action="append",
        default=None,
        help="a tenant to offer (repeatable; the first is the default; default: "
        "$CTXSTORE_TENANT or 'default')",
    )
    console.set_defaults(run="console:cmd_console")

    stats = sub.add_parser(
        "stats", help="the running store's figures: contexts, writes, queries, lag, durations"
    )
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(run="stats:cmd_stats")

    auth = sub.add_parser("auth", help="authentication: 'auth init DIR' writes users and keys")
    auth.add_argument("action", choices=["init"])
    auth.add_argument("directory", type=Path)
    auth.add_argument(
        "--tenant", action="append", default=None, help="a tenant (repeat; default: default)"
    )
    auth.add_argument("--force", action="store_true", help="replace what DIR holds")
    auth.set_defaults(run="admin:cmd_auth")

    migrate = sub.add_parser(
        "migrate", help="show (or --apply) stream replicas/retention that differ from the settings"
    )
    migrate.add_argument("--apply", action="store_true", help="change them")
    migrate.set_defaults(run="admin:cmd_migrate")

    trim = sub.add_parser(
        "trim", help="drop write history older than the newest verified snapshot (no time travel)"
    )
    trim.add_argument("--max-age", type=float, default=None, help="seconds of history to keep")
    trim.add_argument("--max-bytes", type=int, default=None, help="bytes of history to keep")
    trim.set_defaults(run="admin:cmd_trim")

    demo = sub.add_parser("demo", help="run the spec's four phases against the store")
    demo.add_argument("--target", default="./my-project")
    demo.set_defaults(run="contexts:cmd_demo")
    for command in sub.choices.values():
        _global_options(command, defaults=False)
    return parser


# Commands that run for long and carry load get uvloop; the others start faster without it
# (importing uvloop costs about 50 ms, a third of a short command's whole run).
_LONG_RUNNING = frozenset({"serve", "agent", "evolve", "console", "watch"})


def _run(coro: Awaitable[int], command: str) -> int:
    if command in _LONG_RUNNING:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
            pass
        else:
            return uvloop.run(coro)  # type: ignore[arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    module, _, name = args.run.partition(":")
    try:
        command: Command = getattr(importlib.import_module(f"actors.cli.{module}"), name)
        return _run(command(args), args.command)
    except ContextStoreError as exc:
        print(f"ctxstore: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
