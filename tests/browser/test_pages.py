"""Browser tests: real headless Chromium (Debian's /usr/bin/chromium) driving the pages over a live server."""

from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from governance.consent import PROCESSING, TRAINING, policy_publish
from tests.conftest import image_bytes
from webplatform.accounts.services import user_register

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"Chromium not installed at {CHROMIUM} (.ci/run installs it)"),
]
PASSWORD = "a-Long-passphrase-42"


@pytest.fixture
def browser_page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        yield page
        browser.close()


@pytest.fixture
def seeded(transactional_db):
    policy_publish(purpose_slug=PROCESSING, text="Processing policy v1")
    policy_publish(purpose_slug=TRAINING, text="Training policy v1")
    Group.objects.get_or_create(name=settings.COMPLIANCE_GROUP)


def sign_in(page, live_server, username):
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_end_user_grants_consent_uploads_deletes_and_erases(seeded, live_server, browser_page, tmp_path):
    page = browser_page
    user_register(username="ada", password=PASSWORD)
    sign_in(page, live_server, "ada")
    processing = page.locator("tr[data-purpose=processing]")
    assert processing.locator(".state").inner_text() == "not granted"

    # Without consent the upload is refused with the reason shown.
    selfie = tmp_path / "selfie.jpg"
    selfie.write_bytes(image_bytes())
    page.set_input_files("input[name=file]", str(selfie))
    page.click("text=Upload")
    assert "consent" in page.locator("#messages").inner_text().lower()

    processing.locator("button").click()
    assert page.locator("tr[data-purpose=processing] .state").inner_text() == "granted"
    page.set_input_files("input[name=file]", str(selfie))
    page.click("text=Upload")
    assert "uploaded" in page.locator("#messages").inner_text()
    assert page.locator("#photos tr").count() == 2  # header + one photo

    page.locator("#photos button").click()
    assert "No photos." in page.locator("#photos").inner_text()

    page.fill("input[name=confirm]", "erase")
    page.click("text=Erase my account")
    receipt = page.locator("#receipt").inner_text()
    assert len(receipt) > 30
    page.goto(f"{live_server.url}/api/v1/erasures/{receipt}")
    assert '"status"' in page.content()
    # Signed out and unable to sign in again.
    sign_in(page, live_server, "ada")
    assert "/login/" in page.url


def test_compliance_officer_sees_dashboard_without_content(seeded, live_server, browser_page):
    page = browser_page
    officer, _ = user_register(username="olga", password=PASSWORD)
    officer.groups.add(Group.objects.get(name=settings.COMPLIANCE_GROUP))
    sign_in(page, live_server, "olga")
    assert "Compliance dashboard" in page.content()
    assert page.locator("#audit").inner_text().startswith("Intact")
    assert page.locator("img").count() == 0
    page.screenshot(path=str(settings.VAR_DIR / "dashboard.png"))
