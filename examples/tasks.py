"""Handlers used by the command-line examples in ``docs/cli.md``.

From the repository root::

    trioqueue push examples.tasks:send_email '{"to": "ada@example.com", "subject": "Hi"}'
    trioqueue worker examples.tasks:send_email --burst
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from trioqueue import Abort, Attempt, RetryAfter, ServiceBuilder
from trioqueue.layers.timeout import TimeoutLayer

log = logging.getLogger("examples.tasks")


@dataclass
class Email:
    """The args of ``send_email``: a JSON object with these fields."""

    to: str
    subject: str
    body: str = ""


async def send_email(email: Email, attempt: Attempt) -> dict[str, str]:
    """Pretend to send an email.

    Addresses ending in ``@invalid`` are refused for good (the task is
    killed); ``@busy`` ones fail twice before going through.
    """
    if email.to.endswith("@invalid"):
        raise Abort(f"no such mailbox: {email.to}")
    if email.to.endswith("@busy") and attempt < 3:
        raise RetryAfter(1, reason=f"mail server busy (attempt {attempt})")
    await trio.sleep(0.01)  # the network round trip
    log.info("sent %r to %s", email.subject, email.to)
    return {"to": email.to, "status": "sent"}


#: The same handler behind a 5-second timeout, as a service stack:
#: ``trioqueue worker examples.tasks:send_email_with_timeout``.
send_email_with_timeout = ServiceBuilder().layer(TimeoutLayer(5)).service(send_email)
