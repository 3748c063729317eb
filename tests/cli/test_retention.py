"""``trioqueue retention QUEUE``: a queue's rule shown, stored, kept forever and forgotten,
and the same rule seen from the library (the store holds it, not the process)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import trio
from cli.cli_project import Cli

import trioqueue as tq
from trioqueue import Retention


def _on_store(fn: Any) -> Any:
    """Run ``await fn(backend)`` on the ``TRIOQUEUE_BACKEND`` store, opened keeping everything."""

    async def main() -> Any:
        async with tq.open_backend(os.environ["TRIOQUEUE_BACKEND"], retention=None) as backend:
            return await fn(backend)

    return trio.run(main)


def test_retention_shows_stores_keeps_and_forgets_a_queues_rule(cli: Cli, store: str) -> None:
    cli("migrate")
    default = "no rule stored: each process's default, this one's shown"
    assert cli("retention", "jobs:send").out == (
        f"queue 'jobs:send': done 1d, killed 7d, cancelled 7d ({default})\n"
    )
    assert cli.json("retention", "jobs:send") == {
        "queue": "jobs:send", "source": "default",
        "done": 86400.0, "killed": 604800.0, "cancelled": 604800.0,
    }  # fmt: skip
    out = cli("retention", "jobs:send", "--done", "2h", "--cancelled", "forever").out
    assert out == "queue 'jobs:send': done 2h, killed 7d, cancelled forever (stored in the store)\n"
    # The library reads the rule from the store, whatever its own default.
    got = _on_store(lambda b: b.retention("jobs:send"))
    assert got == Retention(done=timedelta(hours=2), killed=timedelta(days=7), cancelled=None)
    assert _on_store(lambda b: b.retention("mail")) is None  # no rule: that process's default
    out = cli("retention", "jobs:send", "--killed", "90m").out  # the others stay as they are
    assert (
        out == "queue 'jobs:send': done 2h, killed 90m, cancelled forever (stored in the store)\n"
    )

    assert cli("retention", "mail", "--keep").out == (
        "queue 'mail': every finished task kept (stored in the store)\n"
    )
    assert cli.json("retention", "mail") == {
        "queue": "mail", "source": "stored", "done": None, "killed": None, "cancelled": None,
    }  # fmt: skip
    assert _on_store(lambda b: b.retentions()) == {
        "jobs:send": Retention(
            done=timedelta(hours=2), killed=timedelta(minutes=90), cancelled=None
        ),
        "mail": None,
    }
    # Set from the library, shown by the command.
    _on_store(lambda b: b.set_retention("mail", Retention(done=timedelta(seconds=30))))
    assert cli("retention", "mail").out == (
        "queue 'mail': done 30s, killed 7d, cancelled 7d (stored in the store)\n"
    )
    assert cli("retention", "mail", "--default").out == (
        f"queue 'mail': done 1d, killed 7d, cancelled 7d ({default})\n"
    )
    assert _on_store(lambda b: b.retentions()).keys() == {"jobs:send"}


def test_retention_refuses_what_does_not_make_a_rule(cli: Cli, store: str) -> None:
    cli("migrate")
    err = cli("retention", "jobs", "--keep", "--done", "1d", code=2).err
    assert err == "trioqueue: error: --keep takes no --done, --killed or --cancelled\n"
    err = cli("retention", "jobs", "--keep", "--default", code=2).err
    assert "not allowed with argument" in err
    err = cli("retention", "jobs", "--done", "soon", code=2).err
    assert "invalid duration 'soon'" in err and "or forever" in err
    err = cli("retention", "bad\x00queue", "--keep", code=2).err
    assert err.startswith("trioqueue: error: cannot set the retention: queue must be 1 to 255")
    cli("retention", code=2)  # the queue is required
    assert _on_store(lambda b: b.retentions()) == {}  # nothing stored


def test_retention_of_a_store_not_made_yet_creates_nothing(cli: Cli, project: Any) -> None:
    err = cli("retention", "jobs", code=7).err
    assert "no trioqueue store" in err
    assert not (project / "q.db").exists()
