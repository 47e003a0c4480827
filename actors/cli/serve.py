"""``ctxstore serve``: the server (embedded unless a URL is given) and the store actor."""

from __future__ import annotations

import argparse
import asyncio

from actors.cli.common import wait_for_signal
from actors.store import LocalStack, StoreActor
from broker import StoreConfig, connect

__all__ = ["cmd_serve"]


async def _until_signal_or_stopped(actor: StoreActor) -> None:
    """Until SIGINT/SIGTERM, or until the actor stops on its own: then raise why, so the
    process exits non-zero and its supervisor restarts it (the restart replays)."""
    signalled = asyncio.create_task(wait_for_signal())
    stopped = asyncio.create_task(actor.wait())
    try:
        await asyncio.wait({signalled, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
        stopped.cancel()
    if stopped.done() and not stopped.cancelled():
        stopped.result()  # raises the failure
        raise RuntimeError("the store actor stopped")


async def cmd_serve(args: argparse.Namespace) -> int:
    config = StoreConfig.build(nats_url=args.nats_url, backend=args.backend)
    if config.nats_url:
        nc = await connect(config.nats_url, name="ctxstore-actor", long_running=True)
        try:
            async with StoreActor(nc, config, owns_process=True) as actor:
                print(f"store actor serving {config.nats_url} (seq {actor.state.applied_seq})")
                print(f"agents connect with: NATS_URL={config.nats_url}", flush=True)
                await _until_signal_or_stopped(actor)
        finally:
            await nc.close()
        return 0
    home = args.store_dir or args.home
    async with LocalStack(home, config, port=args.port) as stack:
        print(f"ctxstore serving on {stack.url} (store dir {home})")
        print(f"agents connect with: NATS_URL={stack.url}", flush=True)
        await wait_for_signal()
    return 0
