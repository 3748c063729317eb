"""``module:handler``: what imports, what is a handler, and the args type push checks against."""

from __future__ import annotations

import pytest
from cli.cli_project import Cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["push", "jobs", "{}"], "expected module:handler, got 'jobs'"),
        (["push", "nomod:send", "{}"], "cannot import module 'nomod': no module named 'nomod'"),
        (["push", "broken:send", "{}"],
         "importing module 'broken' failed: RuntimeError: config missing"),
        (["worker", "jobs:nope"], "module 'jobs' has no attribute 'nope'"),
        (["push", "jobs:Email.nope", "{}"], "module 'jobs' has no attribute 'Email.nope'"),
        (["push", "jobs:not_async", "1"], "handler not_async is not async"),
        (["worker", "jobs:not_async"], "handler not_async is not async"),
        (["push", "jobs:VALUE", "1"], "jobs:VALUE is not a handler"),
        (["push", "jobs:Email", "1"], "jobs:Email is not a handler: Email is a class"),
    ],
)  # fmt: skip
def test_what_is_not_a_handler_is_a_usage_error(cli: Cli, argv: list[str], message: str) -> None:
    lines = cli(*argv, code=2).err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trioqueue: error: "), lines
    assert message in lines[0]
    assert not (cli.root / "q.db").exists()  # refused before the backend was opened


def test_a_worker_cannot_provide_data(cli: Cli) -> None:
    lines = cli("worker", "jobs:needs_state", "--burst", code=2).err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "trioqueue: error: jobs:needs_state is not a handler: parameter 'state' of handler "
        "needs_state asks for Data[dict]"
    ), lines


def test_a_handler_needing_state_is_still_pushable(cli: Cli) -> None:
    # Its args type comes from the first annotation; only a worker can provide Data[...].
    cli.push("jobs:needs_state", '{"to": "x"}')
    cli("push", "jobs:needs_state", '{"nope": 1}', code=2)
    assert cli.status() == {"pending": 1}


def test_a_stack_checks_its_handlers_args(cli: Cli) -> None:
    cli.push("jobs:stack", '{"to": "x"}')
    assert "args do not fit jobs:stack (Email)" in cli("push", "jobs:stack", "1", code=2).err
    assert cli.status() == {"pending": 1}
