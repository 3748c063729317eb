"""The FastAPI recipe with the asyncio client (docs/recipes.md)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from trioqueue.asyncio import open_client


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with open_client(os.environ["TRIOQUEUE_BACKEND"], queue="jobs") as client:
        app.state.tasks = client
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/double/{n}")
async def double(n: int, request: Request) -> dict[str, str]:
    task_id = await request.app.state.tasks.push({"n": n})
    return {"task": task_id}


@app.get("/tasks/{task_id}/result")
async def result(task_id: str, request: Request) -> dict[str, object]:
    return {"result": await request.app.state.tasks.wait_result(task_id)}
