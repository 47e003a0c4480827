"""``ctxstore console``: the web console on the store (``actors.console``)."""

from __future__ import annotations

import argparse

from actors.cli.common import stop_signals
from actors.client import ConfigError, SharedContextStore

__all__ = ["cmd_console"]


async def cmd_console(args: argparse.Namespace) -> int:
    try:
        from actors.console import Console, ConsoleServer, create_app
    except ImportError as exc:
        raise ConfigError(
            f"ctxstore console needs its optional dependencies ({exc.name} is missing): "
            "pip install 'sharedcontextstore[console]'"
        ) from None

    def open_store(tenant: str | None) -> SharedContextStore:
        return SharedContextStore(
            args.nats_url, tenant=tenant, home=args.home, name=f"ctxstore-console-{tenant}"
        )

    # A client connects on first use only: this one just reads the configured tenant.
    default_tenant = args.tenant[0] if args.tenant else open_store(None).config.tenant
    console = Console(open_store, default_tenant=default_tenant, tenants=args.tenant or ())
    with stop_signals() as stop:
        try:
            async with ConsoleServer(
                create_app(console), args.host, args.port, on_stop=console.closing.set
            ) as server:
                # Reach the store before saying the console is up: a wrong URL is an
                # error now, not a page of errors later.
                await console.summaries()
                print(f"CONSOLE_URL={server.url}", flush=True)
                await stop.wait()
        finally:
            await console.aclose()
    return 0
