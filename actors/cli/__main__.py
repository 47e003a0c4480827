"""``python -m actors.cli``: the ``ctxstore`` command."""

import contextlib
import sys

from actors.cli import main

with contextlib.suppress(BrokenPipeError):
    sys.exit(main())
