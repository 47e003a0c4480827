"""The web console: a small web app on a store, for looking at evolutions.

Pages (server-rendered HTML and a little JavaScript, no CDN): the evolutions, one
evolution's timeline (every write, applied or rejected and why, live), its context at any
point of its history, the three-way comparison with the metrics delta, and a diff between
any two versions. Behind them a GraphQL API at ``/graphql`` with a subscription of live
writes.

It reads through the client only (``actors.client``): never the store actor, the evolution
app or the command line. ``ctxstore console`` runs it; the optional dependencies come with
``pip install 'sharedcontextstore[console]'``.
"""

from actors.console.reads import Console, EvolutionFilter, EvolutionRow
from actors.console.server import ConsoleServer
from actors.console.views import create_app

__all__ = ["Console", "ConsoleServer", "EvolutionFilter", "EvolutionRow", "create_app"]
