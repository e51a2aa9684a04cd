"""Photo endpoints: upload, list, metadata, decrypted content, delete — owner only."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.errors import InvalidInput
from webplatform.accounts.access import user_id
from webplatform.lifecycle.retention import photo_delete
from webplatform.photos.models import Photo, file_extension
from webplatform.photos.selectors import photos_live
from webplatform.photos.services import photo_content, photo_create, photo_for_owner

from .errors import ErrorResponse


class PhotoOut(serializers.ModelSerializer):
    face_box = serializers.ListField(
        child=serializers.IntegerField(),
        min_length=4,
        max_length=4,
        allow_null=True,
        read_only=True,
        help_text="[x, y, width, height] in photo pixels of the face a transformation will change; "
        "null if none",
    )

    class Meta:
        model = Photo
        fields = [
            "id",
            "created_at",
            "expires_at",
            "width",
            "height",
            "content_type",
            "face_count",
            "face_box",
        ]


def private_image_response(data: bytes, content_type: str, filename: str) -> HttpResponse:
    """An image response that no cache keeps and no browser sniffs into something else."""
    response = HttpResponse(data, content_type=content_type)
    response["Cache-Control"] = "no-store, private"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


class PhotoListCreateApi(generics.ListAPIView):
    serializer_class = PhotoOut
    parser_classes = [MultiPartParser]

    class Input(serializers.Serializer):
        file = serializers.FileField()

    def get_queryset(self):
        # Past its deadline a photo is gone for the user, even before retention deletes it.
        return photos_live(owner_id=user_id(self.request))

    @extend_schema(request={"multipart/form-data": Input},
                   responses={201: PhotoOut, 400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse,
                              413: ErrorResponse, 415: ErrorResponse,
                              422: OpenApiResponse(ErrorResponse, description=(
                                  "`image_too_complex`: a JPEG with more scans, or scans visiting more "
                                  "blocks, than any camera or encoder writes (docs/security.md)"))})
    def post(self, request: Request) -> Response:
        """Upload a selfie (JPEG, PNG or WebP); needs active `processing` consent."""
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput(
                "Send the image as multipart form field 'file'.", details={"file": ["required"]}
            )
        photo = photo_create(owner_id=user_id(request), data=upload.read())
        return Response(PhotoOut(photo).data, status=status.HTTP_201_CREATED)


class PhotoDetailApi(APIView):
    @extend_schema(responses={200: PhotoOut, 401: ErrorResponse, 404: ErrorResponse})
    def get(self, request: Request, photo_id: str) -> Response:
        """A photo's metadata (never its content)."""
        return Response(PhotoOut(photo_for_owner(user_id=user_id(request), photo_id=photo_id)).data)

    @extend_schema(responses={204: None, 401: ErrorResponse, 404: ErrorResponse})
    def delete(self, request: Request, photo_id: str) -> Response:
        """Delete a photo, its results and its ciphertext."""
        photo = photo_for_owner(user_id=user_id(request), photo_id=photo_id)
        photo_delete(user_id=user_id(request), photo=photo)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PhotoContentApi(APIView):
    @extend_schema(responses={(200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY),
                              (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY),
                              401: ErrorResponse, 404: ErrorResponse})
    def get(self, request: Request, photo_id: str) -> HttpResponse:
        """The decrypted image, for its owner only."""
        photo = photo_for_owner(user_id=user_id(request), photo_id=photo_id)
        data = photo_content(user_id=user_id(request), photo=photo)
        name = f"timeveil-original.{file_extension(photo.content_type)}"  # what a person saves it as
        return private_image_response(data, photo.content_type, name)
