"""Platform metrics for /metrics (Prometheus), beside django-prometheus' request and database metrics."""

from prometheus_client import Counter, Histogram

UPLOADS = Counter("timeveil_uploads_total", "Photos accepted (encrypted and stored).")
UPLOADS_REFUSED = Counter("timeveil_uploads_refused_total", "Uploads refused, by error code.", ["code"])
JOBS = Counter("timeveil_jobs_finished_total", "Transformation jobs finished, by status and reason.",
               ["status", "reason"])
JOB_SECONDS = Histogram("timeveil_job_seconds", "Wall time of a transformation on the worker.",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RETENTION_DELETED = Counter("timeveil_retention_deleted_total", "Objects deleted past their deadline.", ["kind"])
RETENTION_FAILED = Counter("timeveil_retention_failures_total", "Storage deletions that failed (retried).",
                           ["kind"])
ERASURES = Counter("timeveil_erasures_total", "Erasure requests, by stage.", ["stage"])
