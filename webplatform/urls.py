"""Top-level routes: API v1, its schema and docs, probes, metrics, pages."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import health, metrics

urlpatterns = [
    path("api/v1/", include("webplatform.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its script as a file: the docs page needs no inline script under the CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", metrics.metrics_view, name="metrics"),  # operator only (METRICS_TOKEN)
    path("", include("webplatform.pages.urls")),
]

# HTML pages for browsers; API.md's JSON under /api/ (webplatform/pages/errors.py decides).
handler400 = "webplatform.pages.errors.bad_request"
handler403 = "webplatform.pages.errors.permission_denied"
handler404 = "webplatform.pages.errors.page_not_found"
handler500 = "webplatform.pages.errors.server_error"
