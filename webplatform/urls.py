"""Top-level routes: API v1, its schema and docs, probes, metrics, pages."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import health

urlpatterns = [
    path("api/v1/", include("webplatform.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("", include("django_prometheus.urls")),
    path("", include("webplatform.pages.urls")),
]

handler400 = "webplatform.api.errors.bad_request"
handler403 = "webplatform.api.errors.permission_denied"
handler404 = "webplatform.api.errors.page_not_found"
handler500 = "webplatform.api.errors.server_error"
