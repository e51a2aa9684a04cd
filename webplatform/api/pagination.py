"""Limit/offset pagination with bounds: a bad or huge `limit` / `offset` is a 400, never a 500 in the SQL."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

_DIGITS = re.compile(r"^[0-9]{1,12}$")
MAX_OFFSET = 10**9  # far past any real listing, far below the 2**63 where databases overflow


class CappedLimitOffsetPagination(LimitOffsetPagination):
    """`limit` in 1..API_MAX_PAGE_SIZE, `offset` in 0..MAX_OFFSET; anything else is rejected, not ignored."""

    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return int(settings.API_MAX_PAGE_SIZE)

    def get_limit(self, request: Request) -> int:
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return int(self.default_limit or settings.REST_FRAMEWORK["PAGE_SIZE"])
        return _bounded(self.limit_query_param, raw, 1, self.max_limit)

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        return 0 if raw is None else _bounded(self.offset_query_param, raw, 0, MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        bounds = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, MAX_OFFSET)}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"] = {**parameter["schema"], "minimum": low, "maximum": high}
        return parameters


class KnownCountPagination(CappedLimitOffsetPagination):
    """Limit/offset whose `count` a view may supply (`known_count()`, None: count the rows), for lists whose
    total is known without a COUNT over every match."""

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        self._known = view.known_count() if view is not None and hasattr(view, "known_count") else None
        return super().paginate_queryset(queryset, request, view)

    def get_count(self, queryset: Any) -> int:
        return self._known if self._known is not None else int(super().get_count(queryset))


def _bounded(name: str, raw: str, low: int, high: int) -> int:
    value = int(raw) if _DIGITS.match(raw) else None
    if value is None or not low <= value <= high:
        raise ValidationError({name: [f"Must be a whole number from {low} to {high}."]})
    return value


def document_page_errors(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular post-processing: every paginated operation documents the 400 its bounds can answer."""
    error = {"description": "Invalid limit or offset (or another parameter).",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            names = {p.get("name") for p in operation.get("parameters", []) if isinstance(p, dict)}
            if "limit" in names and "400" not in operation.get("responses", {}):
                operation["responses"]["400"] = error
    return result
