"""The board in a real browser: Debian's headless Chromium drives ``trioqueue web``.

The server is the command line in a child process on a free loopback port,
over an SQLite file holding done, killed and running tasks. The browser
opens the overview, filters the tasks to the killed ones, opens one, retries
it with the page's button and sees it pending; a screenshot of each page is
saved in the test's temporary folder. Without Chromium the test fails under
``CI=true`` and is skipped loudly otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from web.board_data import Seeded, seed

from trioqueue import Status
from trioqueue.backends.sqlite import SqliteBackend

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.seconds


def require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if not missing:
        return
    reason = (
        f"Chromium not installed ({', '.join(missing)} missing): "
        "apt-get install chromium chromium-driver"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run)", pytrace=False)
    pytest.skip(f"BROWSER TEST NOT RUN: {reason} (set CI=true to make this fail)")


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Seeded]:
    url = f"sqlite:///{tmp_path}/board.db"

    async def fill() -> Seeded:
        async with SqliteBackend.open(url) as backend:
            return await seed(backend, done=3, killed=2, running=2, pending=1, failed=0)

    return url, trio.run(fill)


async def read_status(url: str, id: str) -> Status | None:
    async with SqliteBackend.open(url) as backend:
        task = await backend.get_task(id)
        return None if task is None else task.status


@pytest.fixture
def server(store: tuple[str, Seeded], tmp_path: Path) -> Iterator[str]:
    """``trioqueue web`` on a free loopback port; yields its base URL."""
    cmd = [sys.executable, "-m", "trioqueue", "web", "--backend", store[0], "--port", "0",
           "--refresh", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once listening
        assert line.startswith("trioqueue web: serving on http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        yield line.split()[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err


@pytest.fixture
def browser() -> Iterator[Any]:
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def test_filter_to_killed_tasks_and_retry_one_in_a_real_browser(
    browser: Any, server: str, store: tuple[str, Seeded], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def wait(condition: Any) -> Any:
        return WebDriverWait(browser, 15).until(condition)

    def click_and_load(element: Any) -> None:
        element.click()
        wait(ec.staleness_of(element))  # the next page replaced this one

    url, seeded = store
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def shot(name: str) -> None:
        assert browser.save_screenshot(str(shots / f"{name}.png"))

    browser.get(server + "/")
    assert browser.title == "Overview · trioqueue"
    killed_link = browser.find_element(By.CSS_SELECTOR, "a.st-killed")
    assert killed_link.text == "2"
    assert browser.find_element(By.CSS_SELECTOR, "a.st-running").text == "2"
    assert browser.find_element(By.CSS_SELECTOR, "a.st-done").text == "3"
    shot("overview")

    click_and_load(browser.find_element(By.LINK_TEXT, "Tasks"))
    Select(browser.find_element(By.NAME, "status")).select_by_value("killed")
    click_and_load(browser.find_element(By.ID, "filter"))
    assert "status=killed" in browser.current_url
    links = browser.find_elements(By.CSS_SELECTOR, "a.task-link")
    assert sorted(a.text for a in links) == sorted(seeded.of(Status.KILLED))
    shot("tasks-killed")

    target = links[0].text
    click_and_load(links[0])
    assert browser.find_element(By.ID, "status").text == "killed"
    assert "RuntimeError: smtp down" in browser.find_element(By.ID, "error").text
    shot("task-killed")

    click_and_load(browser.find_element(By.ID, "retry"))
    assert browser.find_elements(By.ID, "status"), browser.page_source
    assert browser.find_element(By.ID, "status").text == "pending"
    assert "Retried 1 task(s)." in browser.find_element(By.CSS_SELECTOR, ".notice").text
    assert trio.run(read_status, url, target) is Status.PENDING
    shot("task-retried")

    for name in ("queues", "workers"):
        click_and_load(browser.find_element(By.LINK_TEXT, name.capitalize()))
        assert browser.title == f"{name.capitalize()} · trioqueue"
        shot(name)
    saved = sorted(p.name for p in shots.iterdir())
    assert saved == sorted(f"{n}.png" for n in ("overview", "tasks-killed", "task-killed",
                                                "task-retried", "queues", "workers"))  # fmt: skip
    assert all((shots / n).stat().st_size > 5_000 for n in saved)
    if os.environ.get("TRIOQUEUE_SCREENSHOTS"):  # refresh the docs' pictures
        for n in saved:
            shutil.copy(shots / n, Path(os.environ["TRIOQUEUE_SCREENSHOTS"]) / f"web-{n}")
