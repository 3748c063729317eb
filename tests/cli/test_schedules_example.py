"""The command-line worker of docs/schedules.md, as written: each handler gets its own schedules."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import trioqueue as tq
from trioqueue._cli._handlers import load_targets
from trioqueue._cli._parser import build_parser
from trioqueue._cli._worker_command import _Budget, _build

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schedules.md"


def example() -> str:
    """The ``# reports.py`` block of the page."""
    found = re.search(r"```python\n(# reports\.py\n.*?)```", DOCS.read_text(), re.DOTALL)
    assert found is not None, "docs/schedules.md has no # reports.py block"
    return found.group(1)


async def test_the_documented_module_schedules_two_of_its_three_handlers(project: Path) -> None:
    (project / "reports.py").write_text(example())
    args = build_parser().parse_args(["worker", "reports:HANDLERS"])
    schedules: dict[str, list[tuple[str, str]]] = {}
    try:
        for target in load_targets(args.handlers, args.queue):
            async with tq.open_backend("sqlite:///q.db", queue=target.queue) as backend:
                worker = _build(args, target, backend, _Budget(tq.Monitor(), None), [])
                stats = worker.statistics().schedules
                schedules[target.queue] = [(s.name, s.catch_up) for s in stats]
    finally:
        sys.modules.pop("reports", None)
    assert schedules == {
        "reports:daily_report": [
            ("reports:daily_report:cron:0 6 * * mon-fri@Europe/Paris#49e086b09da4", "latest"),
            ("reports:daily_report:cron:0 7 1 * *@Europe/Paris#0a5766943c0c", "all"),
        ],
        "reports:heartbeat": [("reports:heartbeat:every:30s", "latest")],
        "reports:send_email": [],
    }
    text = DOCS.read_text()
    for names in schedules.values():
        for name, _ in names:
            assert name in text  # the page's listing shows these very names
