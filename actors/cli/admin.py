"""``ctxstore auth init``, ``ctxstore migrate`` and ``ctxstore trim``: operating a store."""

from __future__ import annotations

import argparse

from actors.cli.common import store_config
from actors.store.trim import trim_history
from broker import connect
from broker.accounts import init_auth
from broker.nats_errors import nats_errors
from broker.streams import migrate

__all__ = ["cmd_auth", "cmd_migrate", "cmd_trim"]


async def cmd_auth(args: argparse.Namespace) -> int:
    made = init_auth(args.directory, args.tenant or ["default"], force=args.force)
    print(f"wrote {made.accounts} (include it in a nats-server configuration)")
    for tenant in made.tenants():
        print(f"tenant {tenant}: credentials and env files in {made.path / tenant}")
    print(f"run the embedded server with it: ctxstore serve --auth {made.path}")
    return 0


async def _connection(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    config = store_config(args)
    if not config.nats_url:
        raise SystemExit("ctxstore: give the server (--nats-url or NATS_URL)")
    return config, await connect(config.nats_url, name="ctxstore-admin", auth=config.auth)


async def cmd_migrate(args: argparse.Namespace) -> int:
    config, nc = await _connection(args)
    try:
        with nats_errors("migrating the streams"):
            found = await migrate(nc.jetstream(), config, apply=args.apply)
    finally:
        await nc.close()
    if not found:
        print("the streams and buckets are as the settings want them")
    for drift in found:
        action = "changed" if args.apply else "differs"
        extra = " (created anew: its past events are gone)" if drift.recreates else ""
        print(f"{action}: {drift}{extra if args.apply else ''}")
    if found and not args.apply:
        print("run 'ctxstore migrate --apply' to change them")
    return 0


async def cmd_trim(args: argparse.Namespace) -> int:
    config, nc = await _connection(args)
    try:
        with nats_errors("trimming the write stream"):
            done = await trim_history(
                nc.jetstream(), config, max_age=args.max_age, max_bytes=args.max_bytes
            )
    finally:
        await nc.close()
    print(
        f"removed {done.removed} writes before seq {done.cut} (newest verified snapshot: seq "
        f"{done.snapshot_seq}); the context as it was before seq {done.cut} can no longer be "
        "rebuilt"
    )
    return 0
