"""OpenAPI component names for the nested Input / Output serializers of API classes (RegisterApi.Input)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import get_class


class NestedSerializerName(OpenApiSerializerExtension):
    """Name a nested serializer after its API class: RegisterApi.Input -> RegisterInput, not a shared `Input`.

    Without it every view's `Input` maps to one schema component and the published contract is wrong.
    """

    target_class = "rest_framework.serializers.Serializer"
    match_subclasses = True
    priority = -1  # any extension written for a specific serializer wins

    @classmethod
    def _matches(cls, target: Any) -> bool:
        qualname = get_class(target).__qualname__
        return super()._matches(target) and "." in qualname and "<locals>" not in qualname

    def get_name(self, auto_schema: Any, direction: Any) -> str:
        owner, inner = get_class(self.target).__qualname__.rsplit(".", 1)
        return owner.replace(".", "").removesuffix("Api") + inner

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict:
        return auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
