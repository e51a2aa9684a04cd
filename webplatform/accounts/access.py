"""Who a request acts for and what they may see: the user id, compliance officers, the DRF permission."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import BasePermission


def user_id(request: Any) -> int:
    """The signed-in user's id (views behind IsAuthenticated / login_required always have one)."""
    pk = request.user.pk
    if pk is None:
        raise PermissionError("user_id() called on an anonymous request")
    return int(pk)


def is_compliance_officer(user: Any) -> bool:
    """Compliance officers are members of the COMPLIANCE_GROUP group."""
    return bool(
        user and user.is_authenticated and user.groups.filter(name=settings.COMPLIANCE_GROUP).exists()
    )


class IsComplianceOfficer(BasePermission):
    """Audit trail, reports, training runs: compliance officers only (never image content)."""

    message = "Only compliance officers may do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_compliance_officer(request.user)
