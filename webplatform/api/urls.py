"""REST API v1 routes (API.md)."""

from django.urls import path

from . import audit, auth, compliance, consents, jobs, me, photos, training, training_photo

urlpatterns = [
    path("auth/register", auth.RegisterApi.as_view(), name="register"),
    path("auth/token", auth.TokenApi.as_view(), name="token"),
    path("auth/revoke", auth.RevokeAllApi.as_view(), name="revoke-all"),
    path("me", me.MeApi.as_view(), name="me"),
    path("me/export", me.ExportApi.as_view(), name="export"),
    path("erasures/<str:receipt>", me.ErasureStatusApi.as_view(), name="erasure-status"),
    path("compliance/report", compliance.ComplianceReportApi.as_view(), name="compliance-report"),
    path("purposes", consents.PurposeListApi.as_view(), name="purposes"),
    path("me/consents", consents.ConsentStateApi.as_view(), name="consents"),
    path("me/consents/history", consents.ConsentHistoryApi.as_view(), name="consent-history"),
    path("me/consents/<slug:purpose>", consents.ConsentSetApi.as_view(), name="consent-set"),
    path("photos", photos.PhotoListCreateApi.as_view(), name="photos"),
    path("photos/<uuid:photo_id>", photos.PhotoDetailApi.as_view(), name="photo"),
    path("photos/<uuid:photo_id>/content", photos.PhotoContentApi.as_view(), name="photo-content"),
    path(
        "photos/<uuid:photo_id>/transformations", jobs.TransformationListCreateApi.as_view(), name="transform"
    ),
    path("transformations/<uuid:job_id>", jobs.TransformationDetailApi.as_view(), name="transformation"),
    path(
        "transformations/<uuid:job_id>/content",
        jobs.TransformationContentApi.as_view(),
        name="transformation-content",
    ),
    path("me/training-photo", training_photo.TrainingPhotoApi.as_view(), name="training-photo"),
    path("me/privacy", training.PrivacyApi.as_view(), name="privacy"),
    path("training-runs", training.TrainingRunListApi.as_view(), name="training-runs"),
    path("models", training.ModelListApi.as_view(), name="models"),
    path("audit/events", audit.AuditEventListApi.as_view(), name="audit-events"),
    path("audit/verify", audit.AuditVerifyApi.as_view(), name="audit-verify"),
]
