"""Server-rendered pages: the end user's home and the compliance dashboard."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.consent import consent_states
from webplatform.accounts.roles import is_compliance_officer
from webplatform.photos.models import Photo


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The end user's consents and photos, or the compliance dashboard for officers."""
    if is_compliance_officer(request.user):
        return render(request, "compliance.html", {})
    photos = Photo.objects.filter(owner_id=request.user.pk).order_by("-created_at")
    return render(request, "home.html", {"consents": consent_states(user_id=request.user.pk), "photos": photos})
