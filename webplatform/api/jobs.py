"""Transformation endpoints: queue a job on a photo, poll it, fetch the result."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webplatform.accounts.access import user_id
from webplatform.jobs.models import JobFailure, JobStatus, TransformationJob
from webplatform.jobs.selectors import job_result_available, jobs_ahead
from webplatform.jobs.services import job_create, job_for_owner, job_result_content
from webplatform.photos.models import file_extension
from webplatform.photos.services import photo_for_owner

from .errors import ErrorResponse
from .photos import private_image_response


class JobOut(serializers.ModelSerializer):
    photo_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    error = serializers.CharField(
        allow_blank=True, help_text=f"Blank unless failed; then why, one of: {', '.join(JobFailure)}"
    )
    # The contract's key (shared API.md); the row calls it what it holds.
    model_version = serializers.CharField(
        source="aging_version", read_only=True,
        help_text="The version of the aging layers that made the result (e.g. `aging-layers-v3`, "
                  "docs/aging.md); blank until done. The learned generator does not serve: never its version")
    queue_ahead = serializers.SerializerMethodField(
        help_text="While queued: how many requests (anyone's, counted, never named) are queued or running "
                  "ahead of this one; null once it runs")

    result_available = serializers.SerializerMethodField(
        help_text="Whether GET .../content can return the result now: false until done, and once the result "
                  "is deleted (by its owner, a consent withdrawal or its deadline)")

    @extend_schema_field(serializers.BooleanField())
    def get_result_available(self, job: TransformationJob) -> bool:
        return job_result_available(job)

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_queue_ahead(self, job: TransformationJob) -> int | None:
        return jobs_ahead(job)

    class Meta:
        model = TransformationJob
        fields = [
            "id",
            "photo_id",
            "status",
            "error",
            "model_version",
            "target_age",
            "created_at",
            "finished_at",
            "queue_ahead",
            "result_available",
        ]


class TransformationListCreateApi(generics.ListAPIView):
    """A photo's transformations, newest first (GET), or a new one (POST)."""

    serializer_class = JobOut

    class Input(serializers.Serializer):
        target_age = serializers.IntegerField(min_value=1, max_value=100)

    def get_queryset(self):
        # Through the one door first: someone else's photo answers 404, never an empty list.
        photo = photo_for_owner(user_id=user_id(self.request), photo_id=self.kwargs["photo_id"])
        return TransformationJob.objects.filter(photo=photo, owner_id=photo.owner_id).order_by(
            "-created_at", "-pk"
        )

    @extend_schema(responses={200: JobOut(many=True), 401: ErrorResponse, 404: ErrorResponse})
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        """That photo's jobs with their target ages and status, newest first, paginated."""
        return super().get(request, *args, **kwargs)

    @extend_schema(request=Input, responses={
        202: JobOut, 400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse,
        422: OpenApiResponse(ErrorResponse, description="`no_face`: the photo has no face to age (known from "
                                                          "its upload)"),
        429: OpenApiResponse(ErrorResponse, description="`queue_full`: this person already has "
                             "JOB_QUEUED_PER_PERSON transformations waiting (with `Retry-After`); "
                             "or `throttled`")})
    def post(self, request: Request, photo_id: str) -> Response:
        """Age or rejuvenate a photo to target_age (1..100); poll the returned job.

        A person may have a bounded number waiting (429 `queue_full` past it); jobs start fairly between
        people, not first come first served."""
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        photo = photo_for_owner(user_id=user_id(request), photo_id=photo_id)
        job = job_create(user_id=user_id(request), photo=photo, target_age=data.validated_data["target_age"])
        job.refresh_from_db()  # in embedded mode the job already ran in process
        return Response(JobOut(job).data, status=status.HTTP_202_ACCEPTED)


class TransformationDetailApi(APIView):
    @extend_schema(responses={200: JobOut, 401: ErrorResponse, 404: ErrorResponse})
    def get(self, request: Request, job_id: str) -> Response:
        """A job's status, error and the version of the aging layers that produced it."""
        return Response(JobOut(job_for_owner(user_id=user_id(request), job_id=job_id)).data)


class TransformationContentApi(APIView):
    @extend_schema(responses={(200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY),
                              (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY),
                              401: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse})
    def get(self, request: Request, job_id: str) -> HttpResponse:
        """The result image of a finished job (409 while it is not done)."""
        job = job_for_owner(user_id=user_id(request), job_id=job_id)
        data, content_type = job_result_content(user_id=user_id(request), job=job)
        name = f"timeveil-age-{job.target_age}.{file_extension(content_type)}"  # what a person saves it as
        return private_image_response(data, content_type, name)
