"""The console in a real browser: headless Chromium (Debian's ``chromium``, driven by Selenium
through ``chromium-driver``) against ``autorunner serve`` in a subprocess. One walk through what
an operator does: log in, watch an event arrive live, read its timeline, redrive it from the dead
letters, pause and resume, replay under a stricter policy and read the diff.

``SCREENSHOTS=docs`` also writes the screenshots the README shows."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from autorunner.sim.sender import sample_event, signed_headers
from tests.acceptance.runner import SECRET, Server, base_env, start_server
from tests.services import free_port, need

TOKEN = "browser-operator-token-0123"
POLICY = """
[default]
allowed_actions = ["http"]
constraints = { max_attempts = 1 }
[[default.rules]]
actions = [{ step = "order", kind = "http", params = { endpoint = "orders", body = { event = "${event_id}" } } }]
"""
STRICTER = """
[default]
allowed_actions = []
"""
DOCS = Path(__file__).parents[2] / "docs"


@pytest.fixture
def browser() -> Iterator[object]:
    need("chromium")
    from selenium import webdriver  # noqa: PLC0415 - only these tests need it
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",  # as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "policy.toml").write_text(POLICY)
    env = base_env(
        tmp_path / "browser.db",
        CONSOLE_TOKEN=TOKEN,
        TALLY_INTERVAL="0.2",
        RUNNER_POLICY=str(tmp_path / "policy.toml"),
        # Nothing listens there and one attempt is all: every event is a dead letter.
        HTTP_ENDPOINTS=f"orders=http://127.0.0.1:{free_port()}/orders",
    )
    running = start_server(env, tmp_path, tmp_path / "serve.log")
    try:
        yield running
    finally:
        running.terminate()


def text_shows(element_id: str, needle: str) -> Callable[[Any], bool]:
    """A wait condition read in one script: the console swaps live parts of a page in place,
    and an element handle found before a swap fails to read after it (Chromium answers "Node
    with given id does not belong to the document", which Selenium does not treat as stale)."""
    script = "const e = document.getElementById(arguments[0]); return e ? e.innerText : null"

    def shows(driver: Any) -> bool:
        text = driver.execute_script(script, element_id)
        return isinstance(text, str) and needle in text

    return shows


def send(server: Server, event_id: str) -> None:
    body = httpx2.Request("POST", server.url, json=sample_event(event_id=event_id)).read()
    headers = signed_headers(SECRET, body, event_id=event_id)
    assert httpx2.post(server.url, content=body, headers=headers).status_code == 202


@pytest.mark.timeout(120)
def test_an_operator_walks_through_the_console(browser: object, server: Server) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.remote.webdriver import WebDriver  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions as seen  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    assert isinstance(browser, WebDriver)
    driver = browser
    console = f"http://127.0.0.1:{server.port}/console"
    wait = WebDriverWait(driver, 15)
    shots = os.environ.get("SCREENSHOTS")

    def shot(name: str) -> None:
        if shots:
            driver.save_screenshot(str(DOCS / f"console-{name}.png"))

    # Log in: any page leads to the login form first.
    driver.get(f"{console}/events")
    wait.until(seen.presence_of_element_located((By.ID, "token"))).send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form.stack button").click()
    wait.until(seen.title_contains("Events"))

    # An event appears in the open list by itself (server-sent events), then dies (no API).
    send(server, "browser-1")
    wait.until(seen.presence_of_element_located((By.LINK_TEXT, "browser-1")))
    wait.until(text_shows("rows", "dead"))
    shot("events")

    # Its timeline: the delivery, the attempt and why it died, the ledger.
    driver.get(f"{console}/events/browser-1")
    wait.until(text_shows("status", "dead"))
    page = driver.execute_script("return document.querySelector('main').innerText")
    for part in ("Delivery", "Attempt 1 (generation 1): dead", "Ledger"):
        assert part in page
    shot("event")

    # Redrive it from the dead letters: choose, preview, confirm, watch its progress.
    driver.get(f"{console}/dead")
    driver.find_element(By.CSS_SELECTOR, 'input[value="browser-1"]').click()
    driver.find_element(By.ID, "redrive-chosen").click()
    wait.until(seen.title_contains("Redrive?"))
    assert "Redrive 1 dead letter(s)?" in driver.find_element(By.TAG_NAME, "h1").text
    driver.find_element(By.ID, "confirm").click()
    wait.until(text_shows("progress-text", "1 of 1: finished"))
    wait.until(text_shows("progress-text", "1 redriven"))

    # Pause, with a reason; the overview says so; resume.
    driver.get(f"{console}/")
    driver.find_element(By.ID, "reason").send_keys("checking the exchange")
    driver.find_element(By.ID, "pause").click()
    wait.until(text_shows("paused", "checking the exchange"))
    shot("overview")
    driver.find_element(By.ID, "resume").click()
    wait.until(text_shows("paused", "Running"))

    # Replay under a stricter policy (nothing allowed): the order would now be denied.
    driver.get(f"{console}/replay")
    driver.find_element(By.ID, "policy").send_keys(STRICTER)
    driver.find_element(By.ID, "run-replay").click()
    wait.until(seen.presence_of_element_located((By.ID, "replay-diff")))
    assert driver.find_element(By.ID, "replay-newly_denied").text == "1"
    assert "browser-1" in driver.find_element(By.ID, "replay-diff").text
    shot("replay")


@pytest.mark.timeout(120)
def test_on_a_phone_sized_screen_with_only_the_keyboard(browser: object, server: Server) -> None:
    from selenium.webdriver.common.action_chains import ActionChains  # noqa: PLC0415
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.common.keys import Keys  # noqa: PLC0415
    from selenium.webdriver.remote.webdriver import WebDriver  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions as seen  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    assert isinstance(browser, WebDriver)
    driver = browser
    driver.set_window_size(390, 844)
    console = f"http://127.0.0.1:{server.port}/console"
    wait = WebDriverWait(driver, 15)
    send(server, "phone-1")
    driver.get(f"{console}/")
    wait.until(seen.presence_of_element_located((By.ID, "token")))
    # The name field has the focus; a name, Tab, the token and Enter log in.
    keys = ActionChains(driver).send_keys("pat").send_keys(Keys.TAB).send_keys(TOKEN)
    keys.send_keys(Keys.ENTER).perform()
    wait.until(seen.title_contains("Overview"))
    for page in ("/", "/events", "/events/phone-1", "/dead", "/replay"):
        driver.get(console + page)
        wait.until(seen.presence_of_element_located((By.TAG_NAME, "h1")))
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{page} is {overflow}px wider than the screen"
    # The first Tab reaches the skip link, which leads to the content.
    driver.get(console + "/events")
    ActionChains(driver).send_keys(Keys.TAB).perform()
    assert driver.switch_to.active_element.text == "Skip to content"
