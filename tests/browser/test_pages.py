"""Each flow end to end in headless Chromium over a live server, audited with axe-core at 1280 and 390 px."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
import zipfile
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.utils import timezone
from PIL import Image

from governance.audit import pseudonym
from governance.consent import PROCESSING, TRAINING, consent_set, policy_publish
from governance.models import ManifestEntry, RunStatus, TrainingRun
from governance.training import lineage_get_or_create
from tests.lifecycle_support import job_make
from webplatform.accounts.services import user_register
from webplatform.jobs.models import JobStatus, TransformationJob
from webplatform.lifecycle.erasure import user_erase
from webplatform.lifecycle.retention import photo_delete
from webplatform.photos.models import Photo
from webplatform.photos.services import photo_create

from .support import PASSWORD, needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]


def face_jpeg(seed: int = 4) -> bytes:
    from inference.generator.synthetic import Identity, place_in_photo

    photo, _ = place_in_photo(Identity.from_seed(seed), 30, photo_size=(360, 480), face_size=200, seed=seed)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def astronaut_jpeg() -> bytes:
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def sign_in(p, username: str) -> None:
    p.go("/login/")
    p.page.get_by_label("Username").fill(username)
    p.page.get_by_label("Password").fill(PASSWORD)
    p.follow(p.page.get_by_role("button", name="Sign in"))


def user_with_photos(name: str, n: int) -> tuple[object, list[Photo]]:
    user, _ = user_register(username=name, password=PASSWORD)
    consent_set(user_id=user.pk, purpose_slug=PROCESSING, granted=True, policy_version=1)
    return user, [photo_create(owner_id=user.pk, data=face_jpeg(seed=i + 1)) for i in range(n)]


def training_history(user_ids: list[int], runs: int = 3) -> None:
    """Finished DP runs whose manifests hold these users, as rows (a real run trains for minutes)."""
    now = timezone.now()
    lineage = lineage_get_or_create(settings.DP_LINEAGE)
    # Runs may also release a noisy participant count (its noise is a field once the DP work lands).
    count_noise = {"count_noise": 50.0} if hasattr(TrainingRun, "count_noise") else {}
    for i in range(runs):
        run = TrainingRun.objects.create(
            lineage=lineage, status=RunStatus.SUCCEEDED, created_at=now - timedelta(days=runs - i),
            finished_at=now - timedelta(days=runs - i, hours=-1), manifest_sha256=f"{i:02x}" * 32,
            participants=120 + 15 * i, sample_rate=0.05, noise_multiplier=1.1, max_grad_norm=1.0, steps=200,
            delta=1e-6, accountant="prv", epsilon_reserved=1.5, epsilon_spent=1.0 + 0.4 * i,
            model_version=f"timeveil-small-{i + 2}", **count_noise)
        for uid in user_ids:
            ManifestEntry.objects.create(run=run, subject=pseudonym(uid), photo_id=uuid.uuid4(),
                                         consent_record_id=uuid.uuid4())


def test_a_new_user_signs_up_uploads_ages_compares_and_downloads(seeded, make_page, tmp_path):
    p = make_page()
    page = p.page
    p.go("/")
    p.audit("landing")

    # Sign up: nothing pre-ticked; processing ticked, training left alone.
    p.follow(page.get_by_role("link", name="Create an account"))
    assert not page.get_by_label("Help improve the aging model", exact=False).is_checked()
    p.audit("signup")
    page.set_viewport_size({"width": 390, "height": 844})  # a checkbox is a 24 px target at least, on a phone
    boxes = page.locator("input[type=checkbox]").evaluate_all("es => es.map(e => e.getBoundingClientRect())")
    for box in boxes:
        assert box["width"] >= 24 and box["height"] >= 24, box
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password", exact=False).fill(PASSWORD)
    page.get_by_label("Store and transform my photos", exact=False).check()
    p.follow(page.get_by_role("button", name="Create account"))
    assert "Welcome to Timeveil" in page.locator("#messages").inner_text()

    # Upload opens the photo page: a real portrait (NASA's, public domain, shipped by scikit-image).
    selfie = tmp_path / "selfie.jpg"
    selfie.write_bytes(astronaut_jpeg())
    camera = page.locator("#id_camera")  # a phone offers its front camera; the button stays for no script
    assert (camera.get_attribute("accept"), camera.get_attribute("capture")) == ("image/*", "user")
    assert page.get_by_role("button", name="Upload", exact=True).is_visible()
    with page.expect_navigation():  # uploaded as soon as it is chosen: no button to press
        page.get_by_label("Upload a selfie", exact=False).set_input_files(str(selfie))
    page.wait_for_url("**/photos/*")
    assert page.locator(".facebox").count() == 1  # the detector's box, drawn by the page's script
    p.audit("photo")

    # Keyboard only: a preset, then the slider's arrow keys, then Enter on "Age me".
    page.get_by_role("button", name="Senior (70)").focus()
    page.keyboard.press("Enter")
    assert page.locator("#age-value").inner_text() == "70"
    page.locator("#target_age").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.locator("#age-value").inner_text() == "72"
    page.get_by_role("button", name="Age me").focus()
    page.keyboard.press("Enter")

    # Live progress, then the comparison (the job runs in process in embedded mode).
    page.wait_for_function("() => document.querySelector('#compare') || "
                           "/failed|No face|refused|Could not/.test(document.querySelector('#progress-text')"
                           ".textContent)", timeout=120_000)
    assert page.locator("#compare").count() == 1, page.locator("main").inner_text()
    assert "72" in page.locator("#compare-h").inner_text()
    # The result is announced in the live region, and focus moves to the comparison
    page.wait_for_function("() => /Done: your photo aged to 72 is ready/"
                           ".test(document.querySelector('#progress-text').textContent)")
    assert page.evaluate("() => document.activeElement.id") == "compare-h"
    after = page.locator("#after")
    page.locator("#compare-slider").focus()
    for _ in range(3):  # the split moves onto her face (it spans about 35% to 53% of the width)
        page.keyboard.press("ArrowLeft")
    assert "47%" in after.evaluate("e => e.style.clipPath")
    slider_says = page.locator("#compare-slider").get_attribute("aria-valuetext")
    assert slider_says == "47% before, 53% after (age 72)", slider_says
    assert page.locator("#results tbody tr").first.locator("td").nth(1).inner_text() == "72"
    assert page.get_by_role("img", name="Aged to 72", exact=True).evaluate("img => img.naturalWidth") > 0
    p.audit("compare")
    page.set_viewport_size({"width": 390, "height": 844})  # the results' actions stay on screen on a phone
    for box in page.locator("#results tbody tr").first.locator("a").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect())"):
        assert 0 <= box["x"] and box["x"] + box["width"] <= 390, box
    page.set_viewport_size({"width": 1280, "height": 900})

    with page.expect_download() as download:
        page.locator("#download").click()
    path = download.value.path()
    assert Image.open(path).size == Image.open(selfie).size

    # Home shows the photo as a thumbnail, served privately.
    p.go("/")
    thumb = page.locator("#photos img").first
    assert thumb.evaluate("img => img.naturalWidth") > 0
    response = page.request.get(p.base + thumb.get_attribute("src"))
    assert "no-store" in response.headers["cache-control"]
    p.audit("photos")

    # Deleting says what goes first, then goes.
    p.follow(page.get_by_role("link", name="Open and age"))
    p.follow(page.get_by_role("link", name="Delete this photo…"))
    assert "removes 1 photo and 1 result" in page.locator("#consequence").inner_text()
    p.audit("confirm-delete")
    p.follow(page.get_by_role("button", name="Delete photo and results"))
    assert page.locator("#no-photos").is_visible()


def test_a_photo_without_a_face_says_so_before_and_when_asked_to_age(seeded, make_page, tmp_path):
    user_with_photos("fay", 0)
    p = make_page()
    page = p.page
    sign_in(p, "fay")
    sky = tmp_path / "sky.png"
    Image.new("RGB", (320, 240), (90, 140, 200)).save(sky)
    with page.expect_navigation():
        page.get_by_label("Upload a selfie", exact=False).set_input_files(str(sky))
    page.wait_for_url("**/photos/*")
    assert "no face was found" in page.locator("#no-face").inner_text()
    assert page.locator(".facebox").count() == 0

    # "Age me" is off before anything is asked, with the reason beside it (the API would answer 422 no_face)
    assert page.get_by_role("button", name="Age me").is_disabled()
    assert "no face was found" in page.locator("#age-blocked").inner_text()
    p.audit("no-face")
    p.go("/")
    assert page.locator("#photos .badge.warn").inner_text() == "no face found"


def test_a_waiting_request_shows_its_place_in_the_queue_and_moves_up(seeded, make_page):
    # Given two requests of someone else's waiting ahead of ours (the queue is not run: nothing dispatched)
    start = timezone.now()
    other, (theirs,) = user_with_photos("gus", 1)
    ahead = [job_make(owner_id=other.pk, photo_id=theirs.id, created_at=start - timedelta(minutes=m))
             for m in (2, 1)]
    user, (photo,) = user_with_photos("hal", 1)
    mine = job_make(owner_id=user.pk, photo_id=photo.id, created_at=start)
    p = make_page()
    page = p.page
    sign_in(p, "hal")
    # When the photo page follows our request
    p.go(f"/photos/{photo.id}?job={mine.id}")
    says = "() => {}.test(document.querySelector('#progress-text').textContent)".format
    page.wait_for_function(says("/2 requests ahead/"))
    first = page.locator("#progress").evaluate("bar => bar.value")
    p.audit("queued")
    # Then, as those ahead finish, it moves up, and the bar with it
    TransformationJob.objects.filter(pk__in=[j.pk for j in ahead]).update(status=JobStatus.DONE)
    page.wait_for_function(says("/Next in line/"))
    assert page.locator("#progress").evaluate("bar => bar.value") > first
    TransformationJob.objects.filter(pk=mine.pk).update(status=JobStatus.RUNNING)
    page.wait_for_function(says("/Aging your photo/"))
    assert page.locator("#progress").evaluate("bar => bar.value") == 90


def test_consent_centre_policy_receipts_training_photo_and_withdrawal_with_consequences(seeded, make_page):
    user, photos = user_with_photos("bea", 3)
    policy_publish(purpose_slug=TRAINING, text=f"Training policy v2. Each model lineage is capped at epsilon "
                   f"{settings.DP_EPSILON_CAP:g}.\nYou choose the photo kept for training.")
    p = make_page()
    page = p.page
    p.go("/login/")
    p.audit("login")
    sign_in(p, "bea")
    p.follow(page.get_by_role("link", name="Consent"))
    p.audit("consents")

    # The policy is a page; a receipt is a page and a download.
    p.follow(page.locator("[data-purpose=training]").get_by_role("link", name="Read policy version 2"))
    assert f"epsilon {settings.DP_EPSILON_CAP:g}" in page.locator("#policy-text").inner_text()
    added = page.locator("#diff .added").all_inner_texts()
    assert added[-1].endswith("You choose the photo kept for training.")
    p.audit("policy")
    p.go("/consents")
    p.follow(page.locator("#receipts").get_by_role("link", name="View").first)
    p.audit("receipt")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download this receipt (JSON)").click()
    assert json.loads(open(download.value.path()).read())["granted"] is True

    # Allow training, choosing the oldest photo rather than the newest.
    p.go("/consents")
    p.follow(page.locator("[data-purpose=training]").get_by_role("link", name="Allow…"))
    oldest = photos[0]
    page.locator(f"#tp-{oldest.id}").check()
    p.audit("confirm-training")
    p.follow(page.get_by_role("button", name="Allow"))
    assert Photo.objects.get(pk=oldest.pk).kept_for_training
    assert str(oldest.id) in page.get_by_role("img", name="The photo kept for training").get_attribute("src")

    # Then switch it to another photo from the consent centre.
    page.locator(f"#tp-{photos[1].id}").check()
    p.follow(page.get_by_role("button", name="Keep the chosen photo"))
    assert Photo.objects.get(pk=photos[1].pk).kept_for_training

    # Withdrawing processing says what goes before anything does.
    p.follow(page.locator("[data-purpose=processing]").get_by_role("link", name="Withdraw…"))
    consequence = page.locator("#consequence").inner_text()
    assert "deletes your 2 photos and 0 results" in consequence, consequence
    assert Photo.objects.filter(owner_id=user.pk).count() == 3
    p.audit("confirm-withdraw")
    p.follow(page.get_by_role("button", name="Withdraw and delete"))
    assert "Withdrawn" in page.locator("#messages").inner_text()
    assert list(Photo.objects.filter(owner_id=user.pk).values_list("pk", flat=True)) == [photos[1].pk]


def test_privacy_export_and_erasure(seeded, make_page):
    user, photos = user_with_photos("cleo", 1)
    training_history([user.pk])
    p = make_page()
    page = p.page
    sign_in(p, "cleo")
    p.follow(page.get_by_role("link", name="Privacy"))
    assert page.locator("svg.gauge").count() == 1
    assert page.locator("#runs tbody tr").count() == 3
    p.audit("privacy")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download everything we hold about you").click()
    archive = zipfile.ZipFile(download.value.path())
    index = archive.read("index.html").decode()
    assert f'<a href="photos/{photos[0].id}.jpg"><img src="thumbnails/photos/{photos[0].id}.jpg"' in index
    assert f"thumbnails/photos/{photos[0].id}.jpg" in archive.namelist()

    p.follow(page.get_by_role("link", name="Photos"))
    p.follow(page.get_by_role("link", name="erase your account"))
    assert "deletes your 1 photo and 0 results" in page.locator("#consequence").inner_text()
    p.audit("confirm-erase")
    page.get_by_label("Type erase to confirm").fill("erase")
    p.follow(page.get_by_role("button", name="Erase my account"))
    receipt = page.locator("#receipt").inner_text()
    p.audit("erased")
    # The receipt, shown once, can be copied and downloaded
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy the receipt").click()
    page.wait_for_function("() => /Copied/.test(document.querySelector('#receipt-copied').textContent)")
    assert page.evaluate("() => navigator.clipboard.readText()") == receipt
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the receipt").click()
    assert download.value.suggested_filename == "timeveil-erasure-receipt.txt"
    kept = open(download.value.path()).read()
    assert f"Receipt: {receipt}\n" in kept and f"/erasure/{receipt}" in kept, kept
    p.follow(page.get_by_role("link", name="Check the status"))
    assert page.locator("#erasure-status").inner_text().split(":")[0] in {"accepted", "deleting now", "done"}
    p.audit("erasure-status")
    assert receipt not in page.locator("main").inner_text()  # the status page shows no secret back

    sign_in(p, "cleo")
    assert "/login/" in page.url


def test_officer_filters_the_audit_trail_downloads_csv_verifies_and_reads_charts(seeded, make_page):
    dora, photos = user_with_photos("dora", 3)
    training_history([dora.pk])
    photo_delete(user_id=dora.pk, photo=photos[0])  # a deletion for the retention chart
    leaver, _ = user_with_photos("leo", 0)
    user_erase(user_id=leaver.pk)  # an erasure against its deadline
    officer, _ = user_register(username="olga", password=PASSWORD)
    officer.groups.add(Group.objects.get(name=settings.COMPLIANCE_GROUP))
    p = make_page()
    page = p.page
    sign_in(p, "olga")
    assert page.get_by_role("heading", name="Compliance dashboard").is_visible()
    assert page.locator("svg.chart").count() == 4
    assert page.locator("main img").count() == 0  # never image content
    p.audit("officer-dashboard")
    # On a phone the charts' text stays readable (the figure scrolls sideways rather than shrink it)
    page.set_viewport_size({"width": 390, "height": 844})
    smallest = page.evaluate("""() => Math.min(...[...document.querySelectorAll('svg.chart')].flatMap(svg => {
        const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
        return [...svg.querySelectorAll('text')].map(t => scale * parseFloat(t.getAttribute('font-size')));
    }))""")
    assert smallest >= 11, f"chart text shrinks to {smallest:.1f}px at 390px"
    page.set_viewport_size({"width": 1280, "height": 900})

    # Drill down from the consent chart's numbers to the events behind them.
    figure = page.locator("#consent-chart-fig")
    figure.get_by_text("Show the numbers").click()
    p.follow(figure.get_by_role("link", name="granted on", exact=False).first)
    assert set(page.locator("#events tbody tr td:nth-child(3)").all_inner_texts()) == {"consent.granted"}
    p.go("/officer/")

    p.follow(page.get_by_role("link", name="Audit trail").first)
    page.get_by_label("Action").select_option("photo.uploaded")
    p.follow(page.get_by_role("button", name="Filter"))
    actions = page.locator("#events tbody tr td:nth-child(3)").all_inner_texts()
    assert actions == ["photo.uploaded"] * 3
    p.audit("officer-audit")

    with page.expect_download() as download:
        page.locator("#csv").click()
    rows = list(csv.DictReader(open(download.value.path())))
    assert [r["action"] for r in rows] == ["photo.uploaded"] * 3

    p.follow(page.get_by_role("button", name="Verify the chain now"))
    assert page.locator("#verification").inner_text().startswith("Chain intact")

    p.follow(page.get_by_role("link", name="Training runs"))
    assert page.locator("#runs tbody tr").count() == 3
    p.audit("officer-runs")
    # At 390 px the runs table scrolls sideways: a keyboard reaches it and scrolls it (axe's finding, 18.8)
    page.set_viewport_size({"width": 390, "height": 844})
    region = page.get_by_role("region", name="Training runs, newest first")
    # the new width laid out first, then the key's scroll
    page.wait_for_function("r => r.scrollWidth > r.clientWidth", arg=region.element_handle())
    region.focus()
    page.keyboard.press("ArrowRight")
    # The key's scroll lands in a later frame (a loaded full run read scrollLeft 0 straight after the press)
    page.wait_for_function("r => r.scrollLeft > 0", arg=region.element_handle(), timeout=5000)
    page.set_viewport_size({"width": 1280, "height": 900})

    p.go("/no-such-page")
    p.console_errors.clear()  # the page's own 404 status is logged by the browser; that one is the point
    assert page.get_by_role("heading", name="Page not found").is_visible()
    p.audit("error-404")


def test_an_address_is_confirmed_then_a_forgotten_password_is_reset_by_mail(seeded, make_page):
    from django.core import mail

    p = make_page()
    page = p.page
    p.go("/signup")
    page.get_by_label("Username").fill("ines")
    page.get_by_label("Email", exact=False).fill("ines@example.org")
    page.get_by_label("Password", exact=False).fill(PASSWORD)
    p.follow(page.get_by_role("button", name="Create account"))
    assert "ines@example.org" in page.locator("#messages").inner_text()

    # The account page says the address is not confirmed; the link in the mail confirms it with a button
    p.follow(page.get_by_role("link", name="Account", exact=True))
    assert "not confirmed" in page.locator("#email-state").inner_text()
    p.audit("account-unconfirmed")
    (confirm,) = mail.outbox
    p.page.goto(re.search(r"https?://\S+", confirm.body)[0])
    p.audit("verify-email")
    p.follow(page.get_by_role("button", name="Confirm my address"))
    assert "confirmed" in page.locator("#email-state").inner_text()
    assert "not confirmed" not in page.locator("#email-state").inner_text()
    p.follow(page.get_by_role("button", name="Sign out"))

    # Forgot the password: the page answers without saying whether the account exists
    p.follow(page.get_by_role("link", name="Forgot your password?"))
    p.audit("password-reset")
    page.get_by_label("E-mail address").fill("ines@example.org")
    p.follow(page.get_by_role("button", name="Send the reset link"))
    assert "If that address belongs to an account" in page.locator("#reset-sent").inner_text()
    p.audit("password-reset-sent")
    reset = mail.outbox[-1]
    assert reset.to == ["ines@example.org"]
    p.page.goto(re.search(r"https?://\S+", reset.body)[0])
    p.audit("password-reset-confirm")
    new_password = "a-New-passphrase-43"
    page.get_by_label("New password", exact=False).fill(new_password)
    page.get_by_label("The same password again").fill(new_password)
    p.follow(page.get_by_role("button", name="Set the new password"))
    p.audit("password-reset-done")
    p.follow(page.get_by_role("link", name="Sign in").last)
    page.get_by_label("Username").fill("ines")
    page.get_by_label("Password").fill(new_password)
    p.follow(page.get_by_role("button", name="Sign in"))
    assert page.get_by_role("heading", name="Your photos").is_visible()
