"""Server-rendered pages for end users: landing, sign-up, photos and aging, consents, privacy, erasure."""

from __future__ import annotations

import json
import math
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from governance.consent import (
    PROCESSING,
    TRAINING,
    consent_is_active,
    consent_receipt,
    consent_states,
    policy_current,
    purpose_get,
)
from governance.erasure_requests import erasure_by_receipt, erasure_status
from governance.errors import ConsentRequired, InvalidInput, NotFound, TimeveilError
from governance.models import ConsentRecord, PolicyVersion, Purpose
from webplatform.accounts.access import is_compliance_officer, user_id
from webplatform.accounts.recovery import VERIFY, account_mail_queue
from webplatform.accounts.services import user_register
from webplatform.api.throttling import signup_page_wait
from webplatform.jobs.models import UNFINISHED, JobFailure
from webplatform.jobs.selectors import job_result_available, jobs_of_photo
from webplatform.jobs.services import job_create, job_for_owner, job_result_content
from webplatform.lifecycle import consequences
from webplatform.lifecycle.consent_changes import consent_change, training_photo_choose, training_photo_get
from webplatform.lifecycle.erasure import user_erase
from webplatform.lifecycle.retention import photo_delete
from webplatform.photos.models import Photo
from webplatform.photos.selectors import photo_is_trainable, photos_live, photos_trainable
from webplatform.photos.services import (
    photo_content,
    photo_content_unaudited,
    photo_create,
    photo_for_owner,
    photo_library_shown,
)
from webplatform.photos.thumbnails import thumbnail_jpeg
from webplatform.privacy import privacy_page

from . import selectors
from .charts import gauge
from .thumb_grants import grant_sign, grant_valid

NO_PROCESSING = ("Aging is off: Timeveil no longer has your permission to store and transform photos. "
                 "Allow it again from the Consent page to age this photo.")
AGE_PRESETS = [
    ("Child", 8),
    ("Teen", 16),
    ("Young adult", 25),
    ("Middle age", 50),
    ("Senior", 70),
    ("Elder", 90),
]


def home(request: HttpRequest) -> HttpResponse:
    """The landing page for visitors, the photo library for users, the dashboard for officers."""
    if not request.user.is_authenticated:
        return render(request, "landing.html", {"purposes": _purposes()})
    if is_compliance_officer(request.user):
        return redirect("officer-dashboard")
    uid = user_id(request)
    photos = list(photos_live(owner_id=uid))
    if photos:
        # One audit event for every thumbnail the page lists; each image URL carries its grant.
        seq = photo_library_shown(user_id=uid, photos=photos)
        for photo in photos:
            photo.thumb_grant = grant_sign(user_id=uid, photo_id=photo.id, event_seq=seq)  # type: ignore[attr-defined]  # for the template
    states = {s["purpose"]: s for s in consent_states(user_id=uid)}
    return render(request, "photos.html", {
        "photos": photos, "can_upload": states.get(PROCESSING, {}).get("active", False),
        "training_active": states.get(TRAINING, {}).get("active", False),
    })


def _purposes() -> list[dict]:
    """Each purpose with its plain-words copy and current policy."""
    return [{"slug": p.slug, "name": p.name, "policy": policy_current(p), **selectors.purpose_copy(p.slug)}
            for p in Purpose.objects.order_by("slug") if p.versions.exists()]


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account and record the consents ticked on the same form."""
    if request.user.is_authenticated:
        return redirect("home")
    purposes = _purposes()
    context: dict = {"purposes": purposes, "errors": {}, "values": {}}
    if request.method != "POST":
        return render(request, "signup.html", context)
    values = {k: request.POST.get(k, "").strip() for k in ("username", "email")}
    context["values"] = values
    # The API's registration limit, same bucket: each try costs an Argon2 hash, and "taken" tells names.
    wait = signup_page_wait(request)
    if wait is not None:
        seconds = math.ceil(wait)
        context["message"] = f"Too many sign-ups from this address. Try again in {seconds} seconds."
        response = render(request, "signup.html", context, status=429)
        response["Retry-After"] = str(seconds)
        return response
    try:
        user, _ = user_register(username=values["username"], password=request.POST.get("password", ""),
                                email=values["email"])
    except TimeveilError as exc:
        context["errors"] = {k: v if isinstance(v, list) else [v] for k, v in exc.details.items()} or \
            {"__all__": [exc.message]}
        context["message"] = exc.message
        return render(request, "signup.html", context, status=400)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")  # type: ignore[arg-type]
    messages.success(request, "Welcome to Timeveil. Your account and your own encryption key are ready.")
    if user.email:  # a confirmation link (accounts/recovery.py): reset mail goes to confirmed addresses only
        account_mail_queue(kind=VERIFY, user_ids=[user.pk], request=request)
        messages.info(request, f"We sent a link to {user.email}: follow it to confirm the address.")
    for purpose in purposes:
        if request.POST.get(f"consent_{purpose['slug']}") == "1":
            try:
                consent_change(user_id=user.pk, purpose_slug=purpose["slug"], granted=True,
                               policy_version=_int(request.POST.get(f"version_{purpose['slug']}")))
            except TimeveilError as exc:  # e.g. a new policy version was published while the form was open
                messages.error(request, f"{purpose['title']}: {exc.message}")
    return redirect("home")


@login_required
@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    """Upload a selfie from the page (same service as the API), then open it."""
    file = request.FILES.get("file")
    try:
        if file is None:
            raise InvalidInput("Choose an image to upload.")
        photo = photo_create(owner_id=user_id(request), data=file.read())
    except TimeveilError as exc:
        messages.error(request, exc.message)
        return redirect("home")
    if photo.face_count != 0:  # a faceless photo's page says so itself: one state, not "uploaded" over it
        messages.success(request, "Photo uploaded, stripped of metadata and encrypted.")
    return redirect("page-photo", photo_id=photo.id)


@login_required
def photo(request: HttpRequest, photo_id: uuid.UUID) -> HttpResponse:
    """One photo: age it, follow progress, compare before and after, download, list its results."""
    uid = user_id(request)
    item = _photo_or_404(uid, photo_id)
    jobs = jobs_of_photo(owner_id=uid, photo_id=item.id)
    asked = next((j for j in jobs if str(j.id) == request.GET.get("job")), None)
    # Only a result that still exists is compared (a withdrawal leaves jobs "done" with nothing to show).
    compare = asked if asked and job_result_available(asked) else \
        next((j for j in jobs if job_result_available(j)), None)
    # A job still in the queue (a real worker, or the no-script form): the page's script follows it.
    pending = asked if asked and asked.status in UNFINISHED else None
    face_box = getattr(item, "face_box", None)
    box = None
    if face_box and len(face_box) == 4 and item.width and item.height:
        x, y, w, h = face_box  # photo pixels -> percent of the displayed image
        box = {"left": 100 * x / item.width, "top": 100 * y / item.height,
               "width": 100 * w / item.width, "height": 100 * h / item.height}
    no_face = getattr(item, "face_count", None) == 0 or any(j.error == JobFailure.NO_FACE for j in jobs)
    processing = consent_is_active(user_id=uid, purpose_slug=PROCESSING)
    return render(request, "photo.html", {
        "photo": item, "jobs": jobs, "compare": compare, "pending": pending,
        "presets": AGE_PRESETS, "box": json.dumps(box) if box else "", "no_face": no_face,
        "delete": consequences.consequences_of_photo_delete(item),
        "training_active": consent_is_active(user_id=uid, purpose_slug=TRAINING),
        "trainable": photo_is_trainable(item), "processing_active": processing,
        # Why "Age me" is off, if it is: one reason, the first that applies.
        "age_blocked": "no_face" if no_face else None if processing else "no_processing",
    })


def _int(value: str | None) -> int | None:
    """A form field as an int, or None when it is missing or not a number (never a 500)."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _photo_or_404(uid: int, photo_id: uuid.UUID | str) -> Photo:
    try:
        return photo_for_owner(user_id=uid, photo_id=photo_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@login_required
@require_POST
def age(request: HttpRequest, photo_id: uuid.UUID) -> HttpResponse:
    """Queue an aging job without JavaScript (the script uses the API and polls instead)."""
    uid = user_id(request)
    item = _photo_or_404(uid, photo_id)
    target = _int(request.POST.get("target_age"))
    if target is None or not 1 <= target <= 100:
        messages.error(request, "Choose a target age from 1 to 100.")
        return redirect("page-photo", photo_id=item.id)
    try:
        job = job_create(user_id=uid, photo=item, target_age=target)
    except ConsentRequired:  # the API's message names an endpoint: the page says it in its own words
        messages.error(request, NO_PROCESSING)
        return redirect("page-photo", photo_id=item.id)
    except TimeveilError as exc:
        messages.error(request, exc.message)
        return redirect("page-photo", photo_id=item.id)
    return redirect(f"{reverse('page-photo', kwargs={'photo_id': item.id})}?job={job.id}")


def _private_jpeg(data: bytes) -> HttpResponse:
    """A thumbnail made on the fly: never written anywhere, never kept by a cache."""
    response = HttpResponse(thumbnail_jpeg(data), content_type="image/jpeg")
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
def photo_thumb(request: HttpRequest, photo_id: uuid.UUID) -> HttpResponse:
    """A small JPEG of the owner's photo, decrypted for this response only (the read is audited: by the
    library page's one event when the URL carries its grant, else by an event of its own)."""
    uid = user_id(request)
    photo = _photo_or_404(uid, photo_id)
    if grant_valid(request.GET.get("grant"), user_id=uid, photo_id=photo.id):
        return _private_jpeg(photo_content_unaudited(photo=photo))
    return _private_jpeg(photo_content(user_id=uid, photo=photo))


@login_required
def result_thumb(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """A small JPEG of a finished result, for its owner only."""
    uid = user_id(request)
    try:
        data, _ = job_result_content(user_id=uid, job=job_for_owner(user_id=uid, job_id=job_id))
    except TimeveilError as exc:
        if exc.status >= 500:
            raise  # storage down: a 503 page (TimeveilErrorPages), not "no such result"
        raise Http404(exc.message) from exc
    return _private_jpeg(data)


@login_required
def photo_delete_page(request: HttpRequest, photo_id: uuid.UUID) -> HttpResponse:
    """Confirm with what will go (GET), then delete (POST)."""
    uid = user_id(request)
    item = _photo_or_404(uid, photo_id)
    if request.method != "POST":
        return render(request, "confirm_photo_delete.html", {
            "photo": item, "consequences": consequences.consequences_of_photo_delete(item)})
    photo_delete(user_id=uid, photo=item)
    messages.success(request, "The photo and its results were deleted.")
    return redirect("home")


@login_required
@require_POST
def training_photo(request: HttpRequest) -> HttpResponse:
    """Keep the chosen photo for training."""
    try:
        training_photo_choose(user_id=user_id(request), photo_id=request.POST.get("photo_id", ""))
        messages.success(request, "This photo is now the one kept for training.")
    except TimeveilError as exc:
        messages.error(request, exc.message)
    target = request.POST.get("next", "")
    # Only a path on this site: never an open redirect.
    return redirect(target if target.startswith("/") and not target.startswith("//") else "consents")


# --- consent centre -----------------------------------------------------------------------------------

@login_required
def consents(request: HttpRequest) -> HttpResponse:
    """Each purpose in plain words with its state, policy, receipts; the photo kept for training."""
    uid = user_id(request)
    states = {s["purpose"]: s for s in consent_states(user_id=uid)}
    purposes = [{**p, "state": states.get(p["slug"])} for p in _purposes()]
    records = (
        ConsentRecord.objects.filter(user_id=uid).select_related("purpose", "policy").order_by("-at", "-pk")
    )
    photos = photos_trainable(owner_id=uid)  # only photos that may be chosen are offered
    return render(request, "consents.html", {
        "purposes": purposes, "records": records, "photos": photos,
        "training_photo": training_photo_get(user_id=uid),
        "training_active": states.get(TRAINING, {}).get("active", False),
    })


@login_required
def consent_change_page(request: HttpRequest, purpose: str) -> HttpResponse:
    """Confirm a grant or withdrawal with its consequences (GET), then apply it (POST)."""
    uid = user_id(request)
    try:
        current = policy_current(purpose_get(purpose))
    except NotFound as exc:
        raise Http404(exc.message) from exc
    choice = (request.POST if request.method == "POST" else request.GET).get("granted")
    # explicit, as on the API: an empty form never withdraws (and deletes) anything
    if choice not in ("1", "0"):
        raise BadRequest("Say granted=1 to grant or granted=0 to withdraw.")  # the HTML 400 page
    granted = choice == "1"
    if request.method != "POST":
        return render(request, "confirm_consent.html", {
            "purpose": {"slug": purpose, **selectors.purpose_copy(purpose)}, "policy": current,
            "granted": granted,
            "consequences": None if granted else consequences.consequences_of_withdrawal(user_id=uid,
                                                                                        purpose_slug=purpose),
            "photos": photos_trainable(owner_id=uid) if granted and purpose == TRAINING else [],
        })
    try:
        consent_change(user_id=uid, purpose_slug=purpose, granted=granted,
                       policy_version=_int(request.POST.get("policy_version")),
                       training_photo_id=request.POST.get("photo_id") or None)
        title = selectors.purpose_copy(purpose)["title"]
        messages.success(request, f"{'Granted' if granted else 'Withdrawn'}: {title}.")
    except TimeveilError as exc:
        messages.error(request, exc.message)
    return redirect("consents")


def policy(request: HttpRequest, purpose: str, version: int) -> HttpResponse:
    """A policy version as a page, with what changed since the previous version."""
    item = (
        PolicyVersion.objects.filter(purpose__slug=purpose, version=version).select_related("purpose").first()
    )
    if item is None:
        raise Http404("No such policy version.")
    versions = PolicyVersion.objects.filter(purpose=item.purpose).order_by("version")
    return render(request, "policy.html", {
        "policy": item, "purpose": selectors.purpose_copy(purpose), "versions": versions,
        "diff": selectors.policy_diff(item), "current": versions.last(),
    })


def _receipt_or_404(request: HttpRequest, receipt_id: uuid.UUID) -> ConsentRecord:
    record = (ConsentRecord.objects.filter(pk=receipt_id, user_id=user_id(request))
              .select_related("purpose", "policy").first())
    if record is None:
        raise Http404("No such receipt.")
    return record


@login_required
def receipt(request: HttpRequest, receipt_id: uuid.UUID) -> HttpResponse:
    """One consent receipt as a page."""
    record = _receipt_or_404(request, receipt_id)
    return render(request, "receipt.html", {"receipt": consent_receipt(record), "record": record,
                                            "purpose": selectors.purpose_copy(record.purpose.slug)})


@login_required
def receipt_download(request: HttpRequest, receipt_id: uuid.UUID) -> HttpResponse:
    """One consent receipt as a JSON file to keep."""
    record = _receipt_or_404(request, receipt_id)
    response = HttpResponse(json.dumps(consent_receipt(record), indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="timeveil-receipt-{record.pk}.json"'
    response["Cache-Control"] = "private, no-store"
    return response


# --- privacy, export, erasure -------------------------------------------------------------------------

@login_required
def privacy(request: HttpRequest) -> HttpResponse:
    """The user's privacy loss: a gauge against the cap, a chart over runs, the runs, in plain words."""
    uid = user_id(request)
    report, runs, spent, reserved = privacy_page(uid, prv=request.GET.get("estimate") == "prv")
    cap = float(report.get("epsilon_cap", settings.DP_EPSILON_CAP))
    return render(request, "privacy.html", {
        "privacy": report, "cap": cap,
        "gauge": gauge(spent=spent, reserved=reserved, cap=cap, label="Your epsilon"),
        "spent": spent, "reserved": reserved, "chart": selectors.user_epsilon_chart(
            runs, cap=cap, totals=[row["total_after"] for row in report["runs"]]),
        "training_photo": training_photo_get(user_id=uid),
    })


@login_required
def erase_account(request: HttpRequest) -> HttpResponse:
    """Confirm with everything that will go (GET); erase and show the receipt once (POST)."""
    uid = user_id(request)
    if request.method != "POST":
        return render(
            request, "confirm_erase.html", {"consequences": consequences.consequences_of_erasure(user_id=uid)}
        )
    if request.POST.get("confirm", "").strip().lower() != "erase":
        messages.error(request, "Type the word erase to confirm.")
        return redirect("page-erase")
    erasure, receipt_key = user_erase(user_id=uid)
    logout(request)
    return render(request, "erased.html", {"receipt": receipt_key, "status": erasure_status(erasure)})


def erasure_page(request: HttpRequest, receipt_key: str) -> HttpResponse:
    """An erasure's status for whoever holds the receipt: no personal data."""
    try:
        status = erasure_status(erasure_by_receipt(receipt_key))
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return render(request, "erasure_status.html", {"status": status})
