"""GraphiQL in a real browser (Debian's Chromium driven by Playwright) against ``cmdb serve``
in development mode: the page loads only from this server, a bearer token goes in the Headers
tab, a query shows data, and a subscription shows an update made through the API.

If the browser cannot start, the test fails under CI (``CI=true``) with the reason; elsewhere
it is skipped with the reason."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Error, Page, sync_playwright

from tests.e2e.remote import ADMIN_AUTH, SET_STATE, Http, create_ci, unavailable, unique
from tests.served import Served

CHROMIUM = os.environ.get("CMDB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LOOPBACK = {"127.0.0.1"}
# How long the page may take to show what it is waiting for (a bound, not a measurement).
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        unavailable(f"no Chromium at {CHROMIUM} (scripts/setup installs Debian's chromium)")
    # Playwright starts Chromium with a fresh temporary profile (--user-data-dir) of its own.
    with sync_playwright() as pw:
        try:
            launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as e:
            unavailable(f"Chromium ({CHROMIUM}) did not start: {e}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def _set_editor(page: Page, selector: str, text: str) -> None:
    """Put ``text`` into the CodeMirror editor under ``selector`` (typing would fight the
    editor's bracket completion)."""
    editor = page.locator(f"{selector} .CodeMirror").first
    editor.wait_for(state="visible", timeout=WAIT_MS)
    editor.evaluate("(el, text) => el.CodeMirror.setValue(text)", text)
    # GraphiQL parses the edited document after a short debounce; running before that would
    # run the previous document (e.g. a subscription sent as a query over POST).
    page.wait_for_timeout(1_000)


def _result(page: Page) -> str:
    return page.locator(".graphiql-response").first.inner_text()


def _wait_for_result(page: Page, needle: str, what: str) -> str:
    deadline = time.monotonic() + WAIT_MS / 1000
    text = ""
    while time.monotonic() < deadline:
        text = _result(page)
        if needle in text:
            return text
        page.wait_for_timeout(200)
    raise AssertionError(f"{what}: {needle!r} never appeared in the result pane:\n{text}")


def _open_graphiql(page: Page, api: Served) -> list[str]:
    """Load /graphql, recording every request the page makes."""
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{api.url}/graphql", wait_until="load", timeout=WAIT_MS)
    page.get_by_test_id("graphiql-container").wait_for(timeout=WAIT_MS)
    return requests


def _put_token_in_headers_tab(page: Page) -> None:
    page.get_by_role("button", name="Headers").click()
    _set_editor(page, ".graphiql-editor-tool .graphiql-editor:not(.hidden)",
                json.dumps({"Authorization": ADMIN_AUTH}))


def _run(page: Page) -> None:
    page.locator(".graphiql-execute-button").click()


def test_graphiql_loads_only_from_this_server_and_runs_a_query(api: Served, page: Page) -> None:
    ci_name = unique("e2e-browser")
    create_ci(Http(api.url), ci_name)
    requests = _open_graphiql(page, api)

    assert page.evaluate("typeof window.GraphiQL") == "function", "GraphiQL did not load"
    assets = [u for u in requests if urlsplit(u).path.startswith("/graphiql-assets/")]
    assert len(assets) >= 5, ("GraphiQL did not load its assets from this server (installed "
                              f"by scripts/graphiql-assets with npm); it asked for {requests}")
    away = [u for u in requests
            if urlsplit(u).scheme in ("http", "https", "ws", "wss")
            and urlsplit(u).hostname not in LOOPBACK]
    assert away == [], f"requests left 127.0.0.1: {away}"

    _put_token_in_headers_tab(page)
    _set_editor(page, ".graphiql-query-editor",
                "query Items { configurationItems(filter: {nameContains: "
                + json.dumps(ci_name) + "}) { edges { node { name ciClass } } } }")
    _run(page)
    text = _wait_for_result(page, ci_name, "the query")
    assert '"ciClass": "SERVER"' in text
    away = [u for u in requests if urlsplit(u).scheme in ("http", "https", "ws", "wss")
            and urlsplit(u).hostname not in LOOPBACK]
    assert away == [], f"requests left 127.0.0.1: {away}"


def test_graphiql_shows_a_subscription_update(api: Served, page: Page) -> None:
    http = Http(api.url)
    ci_id = create_ci(http, unique("e2e-browser-watched"))
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    _open_graphiql(page, api)
    _put_token_in_headers_tab(page)
    _set_editor(page, ".graphiql-query-editor",
                "subscription Watch { stateChanges(ids: [" + json.dumps(ci_id)
                + "]) { itemId state previous } }")
    _run(page)
    # No message says "now listening": change the state until the page shows one.
    states = ("DOWN", "UP")
    for attempt in range(10):
        state = states[attempt % 2]
        http.ok(SET_STATE, ids=[ci_id], s=state)
        page.wait_for_timeout(2_000)
        if ci_id in _result(page):
            break
    text = _wait_for_result(page, ci_id, "the subscription")
    assert '"state": "DOWN"' in text or '"state": "UP"' in text, text
    assert sockets == [api.ws_url], sockets  # over a websocket to this server
