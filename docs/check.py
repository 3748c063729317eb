"""Check the documentation: links, docstrings, and the runnable examples.

Run with ``python docs/check.py`` (``make docs``). It checks that

1. every relative link in ``README.md`` and ``docs/*.md`` points to a file
   that exists;
2. every public name of ``trioqueue``, ``trioqueue.layers`` and
   ``trioqueue.testing``, and every public method of their public classes,
   has a docstring;
3. every ```` ```python ```` block of the concept pages that calls
   ``trio.run(`` runs to completion in a fresh interpreter within a timeout;
4. the README's session runs as written: its ``# app.py`` block is saved as
   ``app.py`` in a temporary folder, then each ``$ `` line of the console
   blocks after it (but ``pip`` and ``make``) runs there in a shell, must
   exit 0, and must print the lines shown under it (``…`` stands for any text;
   spaces are compared loosely).

It prints one line per problem and a summary, and exits 1 if there was any.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGES = (
    "trioqueue",
    "trioqueue.drivers",
    "trioqueue.layers",
    "trioqueue.testing",
    "trioqueue.sync",
    "trioqueue.asyncio",
    "trioqueue.testing.pytest_plugin",
)
#: Pages whose examples are run.
RUNNABLE = (
    "concepts.md",
    "tasks.md",
    "pushing.md",
    "workers.md",
    "delivery.md",
    "drivers.md",
    "lifecycle.md",
    "clients.md",
    "schedules.md",
    "workflows.md",
)
#: Seconds an example may take.
TIMEOUT = 60.0

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _check_links() -> list[str]:
    problems = []
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        # Links inside code blocks or code spans are not links.
        text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
        text = _CODE_SPAN.sub("", text)
        for target in _LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            path = target.split("#", 1)[0]
            if not (page.parent / path).exists():
                problems.append(f"{page.relative_to(ROOT)}: broken link to {target}")
    return problems


def _public(module: object) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return sorted(names)


def _own_members(cls: type) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if isinstance(value, property) or inspect.isfunction(value):
            out.append((name, value))
    return out


def _check_docstrings() -> list[str]:
    problems = []
    for modname in PACKAGES:
        module = importlib.import_module(modname)
        for name in _public(module):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue  # constants and type aliases carry no docstring of their own
            if not (getattr(obj, "__doc__", None) or "").strip():
                problems.append(f"{modname}.{name}: no docstring")
            if inspect.isclass(obj) and obj.__module__.startswith("trioqueue"):
                for meth, value in _own_members(obj):
                    if not (getattr(value, "__doc__", None) or "").strip():
                        problems.append(f"{modname}.{name}.{meth}: no docstring")
    return sorted(set(problems))


def _examples() -> list[tuple[str, int, str]]:
    out = []
    for page in RUNNABLE:
        path = DOCS / page
        if not path.exists():
            continue
        blocks = _FENCE.findall(path.read_text(encoding="utf-8"))
        for number, code in enumerate(blocks, 1):
            if "trio.run(" in code:
                out.append((page, number, code))
    return out


def _run_example(page: str, number: int, code: str) -> str | None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="trioqueue-docs-") as tmp:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return f"docs/{page}: python block {number} ran over {TIMEOUT:g}s"
    if proc.returncode != 0:
        tail = "\n    ".join(proc.stderr.strip().splitlines()[-8:])
        return f"docs/{page}: python block {number} failed:\n    {tail}"
    return None


_CONSOLE = re.compile(r"^```console[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def readme_session(text: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """Return the README's ``app.py`` and its shell session: (command, expected lines) pairs."""
    start = text.index("```python\n# app.py\n")
    app = _FENCE.search(text, start)
    if app is None:
        raise ValueError("README.md: no ```python block starting with # app.py")
    steps: list[tuple[str, list[str]]] = []
    for block in _CONSOLE.findall(text, app.end()):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps and line.strip():
                steps[-1][1].append(line)
    steps = [(cmd, out) for cmd, out in steps if cmd.split()[0] not in ("pip", "make")]
    return app.group(1), steps


def _matches(expected: str, lines: list[str]) -> bool:
    parts = [re.escape(" ".join(p.split())) for p in expected.split("…")]
    pattern = re.compile("^" + ".*".join(parts) + "$")
    return any(pattern.match(" ".join(line.split())) for line in lines)


def run_readme(folder: Path, text: str | None = None) -> list[str]:
    """Run the README's session in ``folder``; return the problems (none: it works as written).

    ``text`` replaces the README's text (to check the checker).
    """
    if text is None:
        text = (ROOT / "README.md").read_text(encoding="utf-8")
    app, steps = readme_session(text)
    (folder / "app.py").write_text(app, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOQUEUE_")}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    problems = []
    for command, expected in steps:
        try:
            proc = subprocess.run(
                ["bash", "-c", command], cwd=folder, env=env, capture_output=True,
                text=True, timeout=TIMEOUT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            problems.append(f"README.md: `{command}` ran over {TIMEOUT:g}s")
            break
        lines = (proc.stdout + proc.stderr).splitlines()
        if proc.returncode != 0:
            tail = "\n    ".join(lines[-8:])
            problems.append(f"README.md: `{command}` exited {proc.returncode}:\n    {tail}")
            break
        for want in expected:
            if not _matches(want, lines):
                got = "\n    ".join(lines)
                problems.append(f"README.md: `{command}` did not print {want!r}; got:\n    {got}")
    return problems


def _check_readme() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="trioqueue-readme-") as tmp:
        return run_readme(Path(tmp))


def main() -> int:
    """Run every check, print the problems and a summary; return the exit status."""
    links = _check_links()
    docstrings = _check_docstrings()
    examples = _examples()
    failures = [p for p in (_run_example(*e) for e in examples) if p is not None]
    failures += _check_readme()
    for problem in [*links, *docstrings, *failures]:
        print(problem)
    print(
        f"links: {len(links)} broken; docstrings: {len(docstrings)} missing; "
        f"examples: {len(examples) - len(failures)}/{len(examples)} ran"
    )
    return 1 if links or docstrings or failures else 0


if __name__ == "__main__":
    sys.exit(main())
