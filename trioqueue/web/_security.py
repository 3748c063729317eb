"""The board's safety rules: who may bind where, HTTP Basic credentials, CSRF tokens, forms.

Pure checks, each in one place: the app (``_app``) and the server
(``_server``) call them and never re-derive them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

__all__ = [
    "CSRF_COOKIE",
    "MAX_FORM_BYTES",
    "Credentials",
    "check_binding",
    "csrf_ok",
    "is_loopback",
    "new_csrf_token",
    "parse_form",
]

#: The cookie holding a browser's CSRF token (sent back in each form as ``csrf``).
CSRF_COOKIE = "trioqueue_csrf"

#: The largest form body an action accepts.
MAX_FORM_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password for HTTP Basic authentication (the password is never shown)."""

    user: str
    password: str

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """Return the credentials in ``user:password`` (the password may hold colons).

        Raises:
          ValueError: if the user or the password is empty (the message never quotes them).
        """
        user, sep, password = text.partition(":")
        if not sep or not user or not password:
            raise ValueError("credentials must be user:password, both non-empty")
        return cls(user, password)

    def check(self, header: str | None) -> bool:
        """Return whether an ``Authorization`` header carries these credentials.

        Both parts are compared in constant time (``hmac.compare_digest``), so
        the time taken tells nothing about how much of them was right.
        """
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, _, password = given.partition(b":")
        ok_user = hmac.compare_digest(user, self.user.encode())
        ok_password = hmac.compare_digest(password, self.password.encode())
        return ok_user & ok_password

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password=<hidden>)"


def is_loopback(host: str) -> bool:
    """Return whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``) or ``localhost``."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything


def check_binding(host: str, credentials: Credentials | None) -> None:
    """Refuse to serve the board on a non-loopback address without credentials.

    Raises:
      ValueError: if ``host`` is not loopback and ``credentials`` is None.
    """
    if credentials is None and not is_loopback(host):
        raise ValueError(
            f"refusing to serve the board on {host!r} without credentials: anyone who "
            "reaches it could retry, cancel and delete tasks; pass --auth user:password "
            "(or set TRIOQUEUE_WEB_AUTH), or bind 127.0.0.1"
        )


def new_csrf_token() -> str:
    """Return a fresh random CSRF token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def csrf_ok(cookie: str | None, form: Mapping[str, str]) -> bool:
    """Return whether a form's ``csrf`` field matches the browser's CSRF cookie (constant time).

    The double-submit check: another site can make a browser send the
    cookie, but cannot read it to put it in the form (the cookie is also
    ``SameSite=Strict`` and ``HttpOnly``).
    """
    given = form.get("csrf", "")
    if not cookie or not given:
        return False
    return hmac.compare_digest(cookie.encode(), given.encode())


def parse_form(body: bytes) -> dict[str, str]:
    """Return the fields of a URL-encoded form body (the last value of a repeated field).

    Raises:
      ValueError: if the body is too large or not UTF-8 text.
    """
    if len(body) > MAX_FORM_BYTES:
        raise ValueError(f"form too large (over {MAX_FORM_BYTES} bytes)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("form is not UTF-8 text") from None
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=64))
