"""The Django recipe with the blocking client (docs/recipes.md): views, URLs and the client."""

from __future__ import annotations

import functools
import json

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from trioqueue.sync import Client


@functools.cache
def tasks() -> Client:
    """One client per process (it is thread-safe), from ``settings.TRIOQUEUE_BACKEND``."""
    return Client(settings.TRIOQUEUE_BACKEND, queue="jobs")


@csrf_exempt
@require_POST
def double(request: HttpRequest, n: int) -> JsonResponse:
    return JsonResponse({"task": tasks().push({"n": n})})


@csrf_exempt
@require_POST
def order(request: HttpRequest) -> JsonResponse:
    """Store an order and push its task in one transaction of Django's own connection."""
    body = json.loads(request.body)
    with transaction.atomic():
        with transaction.get_connection().cursor() as cursor:
            cursor.execute("INSERT INTO shop_orders (n) VALUES (%s)", [body["n"]])
        raw = transaction.get_connection().connection  # the sqlite3 or psycopg connection
        task_id = tasks().push_in(raw, {"n": body["n"]})
        if body.get("fail"):
            raise ValueError("the order is refused: its task is rolled back with it")
    return JsonResponse({"task": task_id})


@require_GET
def result(request: HttpRequest, task_id: str) -> JsonResponse:
    return JsonResponse({"result": tasks().wait_result(task_id, timeout=30)})


urlpatterns = [
    path("double/<int:n>", double),
    path("orders", order),
    path("tasks/<str:task_id>/result", result),
]
