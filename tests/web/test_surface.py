"""The public surface of ``trioqueue.web`` is pinned, and documented."""

from __future__ import annotations

import trioqueue.web

WEB = {"Credentials", "RunGraph", "RunNode", "create_app", "serve"}


def test_web_names_are_exactly_the_pinned_ones_and_documented() -> None:
    names = {
        n for n in dir(trioqueue.web)
        if not n.startswith("_") and not isinstance(getattr(trioqueue.web, n), type(trioqueue))
    }  # fmt: skip
    assert names == WEB
    assert [n for n in WEB if not getattr(trioqueue.web, n).__doc__] == []
