"""Browser fixtures: Debian's headless Chromium under Playwright, axe-core audits, screenshots on demand."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test import testcases

from governance.consent import PROCESSING, TRAINING, policy_publish

from .support import CHROMIUM

ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SHOTS = Path(__file__).resolve().parents[2] / "bench" / "out" / "pages"

# On in-memory SQLite the live server thread is handed the test's own connection, so two requests at once
# (a page's thumbnails load in parallel) would interleave transactions on one connection and race the audit
# chain head. Production SQLite is a file with BEGIN IMMEDIATE; here the server answers one request at a time.
class OneRequestAtATime(ThreadedWSGIServer):
    """Threads per connection as usual, but each request (body included) runs under one lock."""

    lock = threading.Lock()

    def get_app(self):
        app = super().get_app()

        def locked(environ, start_response):
            with self.lock:
                result = app(environ, start_response)
                try:
                    return [b"".join(result)]
                finally:
                    getattr(result, "close", lambda: None)()

        return locked


testcases.LiveServerThread.server_class = OneRequestAtATime

@pytest.fixture
def seeded(transactional_db):
    """Purposes at policy version 1 (the training text states its cap) and the compliance group."""
    policy_publish(purpose_slug=PROCESSING, name="Processing your photos", text="Processing policy v1")
    policy_publish(
        purpose_slug=TRAINING,
        name="Improving the model",
        text=f"Training policy v1. Each model lineage is capped at epsilon {settings.DP_EPSILON_CAP:g}.",
    )
    Group.objects.get_or_create(name=settings.COMPLIANCE_GROUP)


@pytest.fixture
def browser(monkeypatch) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Page:
    """A Playwright page plus what every flow checks: console errors (CSP), axe, width, screenshots."""

    def __init__(self, page, base_url: str) -> None:
        self.page, self.base = page, base_url
        self.console_errors: list[str] = []
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def follow(self, locator) -> None:
        """Click a link or submit button and wait for the page it leads to; reading straight after a bare
        click can read the old page, or an empty one mid-navigation (a CI run on PostgreSQL did)."""
        with self.page.expect_navigation():
            locator.click()

    def audit(self, name: str) -> None:
        """At 1280 and 390 px: no axe violation of any impact, no sideways scroll, a screenshot of each."""
        page = self.page
        found: list[str] = []
        for width, height in ((1280, 900), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            # Let the new width apply (layout and media queries) before measuring: two animation frames.
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            if not page.evaluate("() => typeof window.axe !== 'undefined'"):
                page.evaluate(AXE.read_text())  # through the debugging protocol: not an inline script
            result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
            found += [f"{width}px {v['id']} ({v['impact']}): {v['help']} -> "
                      f"{[n['target'] for n in v['nodes']][:3]}" for v in result["violations"]]
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {width}px"
            if os.environ.get("SCREENSHOTS") == "1":
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        if os.environ.get("SCREENSHOTS") == "1":
            (SHOTS / f"{name}-axe.txt").write_text("\n".join(found) or "no violations\n")
        page.set_viewport_size({"width": 1280, "height": 900})
        assert not found, f"{name}: {found}"
        assert not self.console_errors, f"{name}: console errors {self.console_errors}"


@pytest.fixture
def make_page(browser, live_server):
    """Factory: a fresh browser context (its own cookies) wrapped as Page."""
    contexts = []

    def make() -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        contexts.append(context)
        return Page(context.new_page(), live_server.url)

    yield make
    for context in contexts:
        context.close()
