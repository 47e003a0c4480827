"""Credentials out of URLs before they are printed or logged."""

from __future__ import annotations

import re

__all__ = ["redact"]

# scheme://userinfo@ ; the userinfo runs to the last "@" before the host, so a password
# holding a raw "@" is hidden whole. Commas and whitespace end it: they separate the URLs of
# a server list or the words of a message.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s,]*)@")


def _hidden(match: re.Match[str]) -> str:
    user, colon, _ = match.group("userinfo").partition(":")
    # user:password keeps the user name (it tells which account); a lone token goes whole.
    return f"{match.group('scheme')}{user}:***@" if colon else f"{match.group('scheme')}***@"


def redact(text: str) -> str:
    """``text`` (a URL, a server list, or a message that quotes URLs) with the password or
    token of every URL in it replaced by ``***``."""
    return _USERINFO.sub(_hidden, text)
