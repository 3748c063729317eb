"""The Flask recipe with the blocking client (docs/recipes.md)."""

from __future__ import annotations

import os

from flask import Flask

from trioqueue.sync import Client

app = Flask(__name__)


def tasks() -> Client:
    """One client per app, made on first use (it is thread-safe)."""
    if "trioqueue" not in app.extensions:
        app.extensions["trioqueue"] = Client(os.environ["TRIOQUEUE_BACKEND"], queue="jobs")
    client: Client = app.extensions["trioqueue"]
    return client


@app.post("/double/<int:n>")
def double(n: int) -> dict[str, str]:
    return {"task": tasks().push({"n": n})}


@app.get("/tasks/<task_id>/result")
def result(task_id: str) -> dict[str, object]:
    return {"result": tasks().wait_result(task_id, timeout=30)}
