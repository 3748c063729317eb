"""The web board: see every queue and task of a store, and act on them, safely.

``create_app(backend)`` is the ASGI app (Starlette and Jinja2, for a Trio
ASGI server such as Hypercorn's Trio worker); ``trioqueue web`` serves it.
Needs the ``web`` extra: ``pip install 'trioqueue[web]'``. See ``docs/web.md``.
"""

from ._app import create_app as create_app
from ._graph import RunGraph as RunGraph
from ._graph import RunNode as RunNode
from ._security import Credentials as Credentials
from ._server import serve as serve

__all__ = ["Credentials", "RunGraph", "RunNode", "create_app", "serve"]
