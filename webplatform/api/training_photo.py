"""Which of the caller's photos is kept for training: read it, or choose another."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webplatform.accounts.access import user_id
from webplatform.lifecycle.consent_changes import training_photo_choose, training_photo_get

from .errors import ErrorResponse


class TrainingPhotoOut(serializers.Serializer):
    photo_id = serializers.UUIDField(allow_null=True, help_text="null: no photo is kept for training")
    expires_at = serializers.DateTimeField(allow_null=True)


class TrainingPhotoApi(APIView):
    class Input(serializers.Serializer):
        photo_id = serializers.UUIDField()

    @extend_schema(responses={200: TrainingPhotoOut, 401: ErrorResponse})
    def get(self, request: Request) -> Response:
        """The photo kept for training, or null."""
        photo = training_photo_get(user_id=user_id(request))
        return Response(
            {"photo_id": photo.id if photo else None, "expires_at": photo.expires_at if photo else None}
        )

    @extend_schema(request=Input, responses={200: TrainingPhotoOut, 400: ErrorResponse, 401: ErrorResponse,
                                             403: ErrorResponse, 404: ErrorResponse})
    def put(self, request: Request) -> Response:
        """Keep this photo for training instead of the current one (needs active `training` consent)."""
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        photo = training_photo_choose(user_id=user_id(request), photo_id=str(data.validated_data["photo_id"]))
        return Response({"photo_id": photo.id, "expires_at": photo.expires_at})
