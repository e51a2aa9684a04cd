"""Platform metrics for /metrics (Prometheus), beside django-prometheus' request and database metrics.

/metrics is for the operator only: it answers with `Authorization: Bearer <METRICS_TOKEN>`, and is off
(404, like any unknown path) while METRICS_TOKEN is unset.
"""

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import Counter, Gauge, Histogram

from governance.audit import checkpoint_lag

UPLOADS = Counter("timeveil_uploads_total", "Photos accepted (encrypted and stored).")
UPLOADS_REFUSED = Counter("timeveil_uploads_refused_total", "Uploads refused, by error code.", ["code"])
JOBS = Counter("timeveil_jobs_finished_total", "Transformation jobs finished, by status and reason.",
               ["status", "reason"])
JOB_SECONDS = Histogram("timeveil_job_seconds", "Wall time of a transformation on the worker.",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RETENTION_DELETED = Counter(
    "timeveil_retention_deleted_total", "Objects deleted past their deadline.", ["kind"]
)
RETENTION_FAILED = Counter("timeveil_retention_failures_total", "Storage deletions that failed (retried).",
                           ["kind"])
ERASURES = Counter("timeveil_erasures_total", "Erasure requests, by stage.", ["stage"])
CACHE_FAILURES = Counter("timeveil_cache_failures_total",
                         "Calls to the shared cache that failed, by what made them (throttle, sign_in).",
                         ["use"])

AUDIT_CHECKPOINT_LAG_EVENTS = Gauge("timeveil_audit_checkpoint_lag_events",
                                    "Audit events past the newest signed checkpoint (read at scrape time).")
AUDIT_CHECKPOINT_LAG_SECONDS = Gauge(
    "timeveil_audit_checkpoint_lag_seconds",
    "How long the oldest unanchored audit event has waited for a checkpoint; alert past "
    "AUDIT_CHECKPOINT_MAX_LAG_SECONDS.")


def _lag_now(field: str) -> float:
    try:
        return float(getattr(checkpoint_lag(), field))
    except Exception:  # a scrape reports what it can; an unreadable store shows as NaN, not a failed scrape
        return float("nan")


AUDIT_CHECKPOINT_LAG_EVENTS.set_function(lambda: _lag_now("events"))
AUDIT_CHECKPOINT_LAG_SECONDS.set_function(lambda: _lag_now("seconds"))


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text for the bearer of METRICS_TOKEN; 404 when it is unset, 401 for anyone else."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return JsonResponse(
            {"error": {"code": "not_found", "message": "Not found.", "details": {}}}, status=404
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        response = JsonResponse(
            {
                "error": {
                    "code": "not_authenticated",
                    "message": "A metrics token is required.",
                    "details": {},
                }
            },
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return ExportToDjangoView(request)
