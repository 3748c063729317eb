"""The FastAPI-on-Trio recipe (Hypercorn's Trio worker) with the Trio backend (docs/recipes.md)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

import trioqueue


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with trioqueue.open_backend(os.environ["TRIOQUEUE_BACKEND"], queue="jobs") as backend:
        app.state.backend = backend
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/double/{n}")
async def double(n: int, request: Request) -> dict[str, str]:
    task_id = await request.app.state.backend.push({"n": n})
    return {"task": task_id}


@app.get("/tasks/{task_id}/result")
async def result(task_id: str, request: Request) -> dict[str, object]:
    return {"result": await request.app.state.backend.wait_result(task_id)}
