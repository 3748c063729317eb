"""``serve``: the board on Hypercorn's Trio worker, refusing unsafe bindings."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from .._backend import Backend
from ._app import create_app
from ._security import Credentials, check_binding

__all__ = ["serve"]

log = logging.getLogger("trioqueue.web")


async def serve(
    backend: Backend,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    auth: str | Credentials | None = None,
    read_only: bool = False,
    refresh: float = 5.0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the board of ``backend`` over HTTP until cancelled.

    Args:
      backend: An open backend.
      host: The address to listen on; anything but a loopback address
        needs ``auth``.
      port: The port (0: any free one; the one taken is reported).
      auth: ``user:password`` (or ``Credentials``) every request must carry
        (HTTP Basic; put the board behind TLS when it leaves the machine).
      read_only: Allow no action.
      refresh: Seconds between automatic reloads of the live pages (0: off).
      task_status: Given to ``nursery.start``: started with the URLs served.

    Raises:
      ValueError: if ``host`` is not loopback and ``auth`` is None, or
        ``auth`` is not ``user:password``.
      OSError: if the address cannot be bound.
    """
    credentials = Credentials.parse(auth) if isinstance(auth, str) else auth
    check_binding(host, credentials)
    app = create_app(backend, read_only=read_only, auth=credentials, refresh=refresh)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None  # query strings may carry ids: the actions log their own lines
    config.errorlog = logging.getLogger("trioqueue.web.server")
    config.graceful_timeout = 2.0
    await hypercorn_serve(app, config, task_status=task_status)  # type: ignore[arg-type]
