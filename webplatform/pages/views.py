"""Server-rendered pages: the end user's consents, photos and privacy; the compliance dashboard."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from governance import clock
from governance.consent import consent_states, policy_current, purpose_get
from governance.errors import TimeveilError
from webplatform.accounts.roles import is_compliance_officer, user_id
from webplatform.lifecycle.erasure import user_erase
from webplatform.lifecycle.report import compliance_report
from webplatform.lifecycle.withdrawal import consent_change
from webplatform.photos.models import Photo
from webplatform.photos.services import photo_create, photo_delete, photo_for_owner
from webplatform.privacy import privacy_report


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The end user's page, or the compliance dashboard for officers."""
    if is_compliance_officer(request.user):
        return render(request, "compliance.html", {"report": compliance_report()})
    photos = Photo.objects.filter(owner_id=user_id(request), expires_at__gt=clock.now()).order_by("-created_at")
    return render(request, "home.html", {
        "consents": consent_states(user_id=user_id(request)), "photos": photos,
        "privacy": privacy_report(user_id(request)),
    })


@login_required
@require_POST
def consent(request: HttpRequest, purpose: str) -> HttpResponse:
    """Grant (to the current policy) or withdraw consent from the page."""
    granted = request.POST.get("granted") == "1"
    try:
        version = policy_current(purpose_get(purpose)).version
        consent_change(user_id=user_id(request), purpose_slug=purpose, granted=granted, policy_version=version)
        messages.success(request, f"Consent for {purpose} {'granted' if granted else 'withdrawn'}.")
    except TimeveilError as exc:
        messages.error(request, exc.message)
    return redirect("home")


@login_required
@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    """Upload a selfie from the page (same service as the API)."""
    file = request.FILES.get("file")
    try:
        if file is None:
            raise TimeveilError("Choose an image to upload.")
        photo_create(owner_id=user_id(request), data=file.read())
        messages.success(request, "Photo uploaded and encrypted.")
    except TimeveilError as exc:
        messages.error(request, exc.message)
    return redirect("home")


@login_required
@require_POST
def delete_photo(request: HttpRequest, photo_id: str) -> HttpResponse:
    """Delete one photo and its results."""
    try:
        photo_delete(user_id=user_id(request), photo=photo_for_owner(user_id=user_id(request), photo_id=photo_id))
        messages.success(request, "Photo deleted.")
    except TimeveilError as exc:
        messages.error(request, exc.message)
    return redirect("home")


@login_required
@require_POST
def erase_account(request: HttpRequest) -> HttpResponse:
    """Erase the account; show the receipt once."""
    if request.POST.get("confirm") != "erase":
        messages.error(request, "Type 'erase' to confirm.")
        return redirect("home")
    _, receipt = user_erase(user_id=user_id(request))
    logout(request)
    return render(request, "erased.html", {"receipt": receipt})
