"""Finding the local store: the directory every URL-less client and ``ctxstore`` command shares."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

__all__ = ["RECORD", "default_home", "discover_server"]

RECORD: Final = "server.json"


def default_home() -> Path:
    """``$CTXSTORE_HOME``, else ``$XDG_DATA_HOME/ctxstore``, else ``~/.local/share/ctxstore``."""
    explicit = os.environ.get("CTXSTORE_HOME")
    if explicit:
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "ctxstore"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def discover_server(home: Path) -> str | None:
    """The URL of a server recorded in ``home`` whose process still runs."""
    try:
        record = json.loads((home / RECORD).read_text(encoding="utf-8"))
        url, pid = str(record["url"]), int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if _alive(pid) else None
