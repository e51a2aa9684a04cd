"""Settings from the environment (django-environ); embedded defaults need no services at all."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if env.bool("TIMEVEIL_READ_DOTENV", default=True):  # tests turn it off: a developer's .env never leaks in
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Everything the embedded mode writes lives here: database, ciphertext objects, keyring, demo credentials.
# Importing the settings writes nothing: `make var` (the first step of `make run`) creates this folder (0700)
# and a secret key in it (0600); a start without them fails at the end of this module, saying so.
VAR_DIR = Path(env.str("TIMEVEIL_VAR_DIR", default=str(BASE_DIR / "var")))
SECRET_KEY_FILE = VAR_DIR / "secret_key"


def _secret_key() -> str:
    """SECRET_KEY from the environment, else the one `make var` kept under var/; empty when neither exists."""
    if env.str("SECRET_KEY", default=""):
        return env.str("SECRET_KEY")
    return SECRET_KEY_FILE.read_text().strip() if SECRET_KEY_FILE.is_file() else ""


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "governance",
    "webplatform.accounts",
    "webplatform.photos",
    "webplatform.jobs",
    "webplatform.lifecycle",
    "webplatform.training",
    "webplatform.pages",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "webplatform.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "webplatform.nostore.NoStoreMiddleware",  # every response below here is private: no-store (issue 19.12)
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "webplatform.pages.errors.FormBodyErrors",  # a too-large file: a 413 page, not a 500 from the CSRF check
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "webplatform.pages.errors.TimeveilErrorPages",  # a page view's TimeveilError: its status, never a 500
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "webplatform.urls"
WSGI_APPLICATION = "webplatform.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webplatform.pages.context.retention",
            ]
        },
    }
]

# --- database: SQLite under var/ by default, PostgreSQL at scale -------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'timeveil.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE: a writer takes the lock at BEGIN, so two appends cannot both read the same chain head.
    # secure_delete: deleted rows (wrapped data keys above all) are overwritten, not left in free pages.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        # SQLite's busy wait is not a queue: with 32 request threads on 2 starved cores one writer waited out
        # 20 s (a 500 in tests/integration/test_embedded_server.py); gunicorn's own limit is 120 s.
        "timeout": 60,
        # WAL: readers never wait for the writer, and the writer waits (timeout) instead of failing at once.
        "init_command": "PRAGMA secure_delete=ON; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sign-in counters and rate limits must be shared by every web process and counted atomically (`incr`):
# Redis at scale (CACHE_URL); by default a file-backed SQLite cache under var/ that every gunicorn worker of
# one machine shares, with no extra service (a per-process memory cache let a locked-out password through
# in 5 of 8 tries under `make run`).
if "CACHE_URL" in env.ENVIRON:
    CACHES = {"default": env.cache("CACHE_URL")}
else:
    CACHES = {"default": {
        "BACKEND": "diskcache.DjangoCache",
        "LOCATION": str(VAR_DIR / "cache"),
        "SHARDS": 4,
        "DATABASE_TIMEOUT": 0.5,  # seconds a writer waits for another process's write before retrying
        "OPTIONS": {"size_limit": 256 * 1024 * 1024},
    }}

# --- auth ---------------------------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Every password check goes through the limits (accounts/lockout.py). ModelBackend stays listed so that
# sessions signed in with it by name still load; the limited backend never falls through to it.
AUTHENTICATION_BACKENDS = [
    "webplatform.accounts.lockout.LimitedModelBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_WINDOW = env.int("LOGIN_FAILURE_WINDOW", default=900)  # seconds per counting window
LOGIN_LIMIT_ACCOUNT_ADDRESS = env.int("LOGIN_LIMIT_ACCOUNT_ADDRESS", default=5)  # failures per window
LOGIN_LIMIT_ADDRESS = env.int("LOGIN_LIMIT_ADDRESS", default=30)
LOGIN_LIMIT_ACCOUNT = env.int("LOGIN_LIMIT_ACCOUNT", default=50)  # waived for addresses that signed in before
LOGIN_KNOWN_ADDRESS_DAYS = env.int("LOGIN_KNOWN_ADDRESS_DAYS", default=90)
# Proxies whose X-Forwarded-For is believed (accounts/addresses.py): addresses or networks, comma-separated.
# Every per-address limit (sign-in, DRF throttles, the sign-up page) keys on the client address this gives.
try:
    TRUSTED_PROXIES = tuple(ipaddress.ip_network(name, strict=False)
                            for name in env.list("TRUSTED_PROXIES", default=[]) if name.strip())
except ValueError as _exc:
    raise environ.ImproperlyConfigured(
        "TRUSTED_PROXIES names the proxies in front of Timeveil by address or network, comma-separated "
        f"(e.g. TRUSTED_PROXIES=10.0.0.5,10.1.0.0/16), not a hop count: {_exc}") from None
API_TOKEN_LIFETIME = timedelta(days=env.int("API_TOKEN_LIFETIME_DAYS", default=30))

# --- e-mail: password reset and address verification (webplatform/accounts/recovery.py) ----------------
# EMAIL_URL: consolemail:// (the default, and `make run`'s: each mail is printed to the server's log),
# smtp://user:password@host:587/?tls=True (STARTTLS), smtp+ssl://user:password@host:465.
_mail = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _mail["EMAIL_BACKEND"]
EMAIL_HOST, EMAIL_PORT = _mail.get("EMAIL_HOST") or "localhost", _mail.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _mail.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _mail.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS, EMAIL_USE_SSL = bool(_mail.get("EMAIL_USE_TLS")), bool(_mail.get("EMAIL_USE_SSL"))
EMAIL_FILE_PATH = _mail.get("EMAIL_FILE_PATH") or ""
DEFAULT_FROM_EMAIL = env.str("EMAIL_FROM", default="Timeveil <no-reply@localhost>")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)  # seconds an SMTP call may take before it gives up
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_SECONDS", default=3600)  # a reset link's lifetime
EMAIL_VERIFY_MAX_AGE = env.int("EMAIL_VERIFY_SECONDS", default=3 * 86400)  # a confirmation link's lifetime

# --- HTTPS and browser policy: on with PRODUCTION=1 (or HTTPS=1), each overridable ------------------------
_HTTPS = env.bool("HTTPS", default=env.bool("PRODUCTION", default=False))
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes call over plain HTTP inside the cluster
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if _HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)  # opt in: preload is hard to undo
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=_HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_REFERRER_POLICY = "same-origin"
# No inline script anywhere (webplatform/csp.py): pages load their JS from static files.
CONTENT_SECURITY_POLICY = env.str("CONTENT_SECURITY_POLICY", default=(
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"))
CONTENT_SECURITY_POLICY_PATHS = {
    # Swagger UI (split view: its script is a file) styles its widgets inline; still no inline script.
    "/api/docs/": CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'"),
}
# /metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`; unset, it is off (404).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
COMPLIANCE_GROUP = "compliance"

# --- REST API -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "webplatform.accounts.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "webplatform.api.parsers.GuardedJSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "webplatform.api.pagination.CappedLimitOffsetPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    "DEFAULT_THROTTLE_CLASSES": [
        # DRF's, failing open when the cache is down (webplatform/api/throttling.py)
        "webplatform.api.throttling.AnonRateThrottle",
        "webplatform.api.throttling.UserRateThrottle",
        "webplatform.api.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="600/min"),
        "user": env.str("THROTTLE_USER", default="6000/min"),
        "auth": env.str("THROTTLE_AUTH", default="20/min"),
        "receipt": env.str("THROTTLE_RECEIPT", default="60/min"),
        # reset requests and confirmation mails: per address, and per e-mail address asked for
        "account_mail": env.str("THROTTLE_ACCOUNT_MAIL", default="5/hour"),
    },
    "EXCEPTION_HANDLER": "webplatform.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Timeveil API",
    "DESCRIPTION": "Consented, encrypted face transformation with privacy budgets people can see.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Paginated operations document the 400 for a bad limit / offset (webplatform/api/pagination.py).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "webplatform.api.pagination.document_page_errors"],
}

# --- uploads: kept in memory only, so no plaintext ever lands in a temp file ---------------------------
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=10 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env.int("UPLOAD_MAX_PIXELS", default=24_000_000)
UPLOAD_MAX_SIDE = env.int("UPLOAD_MAX_SIDE", default=2048)  # originals are kept at most this many px a side
# A JPEG that big decodes at 1/2..1/8 scale, so it may name more pixels; a progressive one still holds every
# coefficient while it decodes: 2 bytes each, 300 MB at 50 Mpx in 4:4:4 (docs/security.md).
UPLOAD_MAX_JPEG_PIXELS = env.int("UPLOAD_MAX_JPEG_PIXELS", default=50_000_000)
UPLOAD_MAX_JPEG_SCANS = env.int("UPLOAD_MAX_JPEG_SCANS", default=32)  # libjpeg writes 10 (colour), 18 (CMYK)
# 8x8 blocks the decoder visits summed over a JPEG's scans (about 50 ns each at worst): the CPU bound
UPLOAD_MAX_JPEG_BLOCK_VISITS = env.int("UPLOAD_MAX_JPEG_BLOCK_VISITS", default=10_000_000)
FILE_UPLOAD_HANDLERS = ["webplatform.photos.upload.CappedMemoryUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
JSON_MAX_BYTES = DATA_UPLOAD_MAX_MEMORY_SIZE  # larger JSON bodies: 413 (webplatform/api/parsers.py)
JSON_MAX_DEPTH = 64  # deeper nesting: 400; no endpoint takes more than two levels
API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=1000)  # larger `limit`: 400

# --- storage: ciphertext only; filesystem under var/ by default, S3 through django-storages at scale ----
STORAGE_BACKEND = env.str("STORAGE_BACKEND", default="filesystem")
if STORAGE_BACKEND == "s3":
    _objects = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("S3_BUCKET"),
            "endpoint_url": env.str("S3_ENDPOINT_URL", default=None),
            "region_name": env.str("S3_REGION", default=None),
            "access_key": env.str("S3_ACCESS_KEY_ID", default=None),
            "secret_key": env.str("S3_SECRET_ACCESS_KEY", default=None),
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
elif STORAGE_BACKEND == "filesystem":
    _objects = {
        "BACKEND": "webplatform.atomic_storage.AtomicFileSystemStorage",  # a failed save leaves no file
        "OPTIONS": {"location": str(VAR_DIR / "objects"), "file_permissions_mode": 0o600},
    }
else:
    raise environ.ImproperlyConfigured("STORAGE_BACKEND must be 'filesystem' or 's3'.")
STORAGES = {
    "default": _objects,
    "objects": _objects,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"  # filled by collectstatic, which creates it
WHITENOISE_USE_FINDERS = True

# --- keys: a 0600 keyring file under var/ by default; a KMS provider behind the same interface ---------
KEYRING_URL = env.str("KEYRING_URL", default=f"file://{VAR_DIR / 'keyring.json'}")

# --- audit: signed checkpoints outside the database (docs/audit.md) -----------------------------------
# At scale point this at storage the database's writers cannot write (another host's mount, a WORM volume).
AUDIT_CHECKPOINT_DIR = Path(env.str("AUDIT_CHECKPOINT_DIR", default=str(VAR_DIR / "audit")))
AUDIT_CHECKPOINT_FSYNC = env.bool("AUDIT_CHECKPOINT_FSYNC", default=False)
# Events with no checkpoint at all fail verification (the store was lost or never written).
AUDIT_REQUIRE_CHECKPOINT = env.bool("AUDIT_REQUIRE_CHECKPOINT", default=True)
# An event no checkpoint anchors for longer than this means checkpoint writes fail (full or read-only store):
# verification, /readyz and the officer dashboard report it (docs/audit.md).
AUDIT_CHECKPOINT_MAX_LAG_SECONDS = env.float("AUDIT_CHECKPOINT_MAX_LAG_SECONDS", default=60)
# Group commit (docs/audit.md): an audited action only queues its event (AuditPending) and the sequencer
# chains the queue in batches under the head lock, so actions never wait on each other's transactions. On
# by default on PostgreSQL; SQLite has one writer anyway and chains in the action's transaction.
AUDIT_GROUP_COMMIT = env.bool("AUDIT_GROUP_COMMIT",
                              default=DATABASES["default"]["ENGINE"].endswith("postgresql"))
AUDIT_DRAIN_BATCH = env.int("AUDIT_DRAIN_BATCH", default=500)  # pending events chained per transaction
AUDIT_DRAIN_ROUNDS = env.int("AUDIT_DRAIN_ROUNDS", default=20)  # batches one drain call chains at most
# Or one object per checkpoint in S3 (credentials from the AWS_* environment / instance role), locked in
# COMPLIANCE mode for AUDIT_CHECKPOINT_S3_RETAIN_DAYS when the bucket has object lock.
AUDIT_CHECKPOINT_S3_BUCKET = env.str("AUDIT_CHECKPOINT_S3_BUCKET", default="")
AUDIT_CHECKPOINT_S3_PREFIX = env.str("AUDIT_CHECKPOINT_S3_PREFIX", default="audit-checkpoints/")
AUDIT_CHECKPOINT_S3_ENDPOINT_URL = env.str("AUDIT_CHECKPOINT_S3_ENDPOINT_URL", default="")
AUDIT_CHECKPOINT_S3_REGION = env.str("AUDIT_CHECKPOINT_S3_REGION", default="")
AUDIT_CHECKPOINT_S3_RETAIN_DAYS = env.int("AUDIT_CHECKPOINT_S3_RETAIN_DAYS", default=0)

# --- retention and erasure (hours / days) -------------------------------------------------------------
RETENTION_ORIGINAL = timedelta(hours=env.int("RETENTION_ORIGINAL_HOURS", default=48))
RETENTION_RESULT = timedelta(hours=env.int("RETENTION_RESULT_HOURS", default=48))
RETENTION_TRAINING = timedelta(days=env.int("RETENTION_TRAINING_DAYS", default=90))
ERASURE_DEADLINE = timedelta(days=env.int("ERASURE_DEADLINE_DAYS", default=30))

# --- tasks: eager in process by default; Redis or RabbitMQ workers at scale ----------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="memory://")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=CELERY_BROKER_URL == "memory://")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# JSON only: a message carries ids, never image bytes, and nothing is unpickled.
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# `aging` runs the jobs' aging layers (OpenCV and numpy on the CPU, one photo per worker process). Training
# has its own queue: a run takes hours, and must neither block the aging nor be redelivered as one.
CELERY_TASK_ROUTES = {"webplatform.jobs.tasks.transform_task": {"queue": "aging"},
                      # the runs' sweeper must not wait behind a run: exact names win over the pattern
                      "webplatform.training.tasks.runs_sweep_task": {"queue": "default"},
                      "webplatform.training.tasks.*": {"queue": "training"}}

# --- inference ----------------------------------------------------------------------------------------
MODEL_REGISTRY_DIR = Path(env.str("MODEL_REGISTRY_DIR", default=str(VAR_DIR / "models")))

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- periodic jobs: Celery beat at scale; a thread in the embedded `make run` ---------------------------
RETENTION_INTERVAL_SECONDS = env.int("RETENTION_INTERVAL_SECONDS", default=600)
CELERY_BEAT_SCHEDULE = {
    "enforce-retention": {"task": "webplatform.lifecycle.tasks.retention_enforce_task",
                          "schedule": RETENTION_INTERVAL_SECONDS},
}
# A library page's thumbnail grants (one audit event a page view, not one a thumbnail) last this long.
PHOTO_THUMB_GRANT_SECONDS = env.int("PHOTO_THUMB_GRANT_SECONDS", default=300)
# The full audit chain verification (every link and checkpoint); pages show its stored result.
AUDIT_VERIFY_INTERVAL_SECONDS = env.int("AUDIT_VERIFY_INTERVAL_SECONDS", default=3600)
CELERY_BEAT_SCHEDULE["verify-audit-chain"] = {"task": "webplatform.lifecycle.tasks.audit_verify_task",
                                              "schedule": AUDIT_VERIFY_INTERVAL_SECONDS}
# The backstop that chains events whose action committed but whose own drain never ran (a process died).
AUDIT_DRAIN_INTERVAL_SECONDS = env.int("AUDIT_DRAIN_INTERVAL_SECONDS", default=10)
CELERY_BEAT_SCHEDULE["drain-audit-queue"] = {"task": "webplatform.lifecycle.tasks.audit_drain_task",
                                             "schedule": AUDIT_DRAIN_INTERVAL_SECONDS}
EMBEDDED_SCHEDULER = env.bool("EMBEDDED_SCHEDULER", default=False)

# --- jobs that never strand: heartbeats, a sweeper, the job row as outbox -------------------------------
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=10)  # the worker of a running job beats
JOB_STALE_SECONDS = env.float("JOB_STALE_SECONDS", default=60)  # no beat for this long: the worker is dead
JOB_SWEEP_SECONDS = env.float("JOB_SWEEP_SECONDS", default=30)  # the sweeper / dispatcher runs this often
# Queued this long since its last publish: publish again. The bound on a lost message (a broker restarted
# without persistence): republished within JOB_REPUBLISH_SECONDS + JOB_SWEEP_SECONDS. A job merely waiting
# behind a backlog gets a spare message, which its claim drops once the job has run.
JOB_REPUBLISH_SECONDS = env.float("JOB_REPUBLISH_SECONDS", default=60)
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=5)
JOB_RETRY_BASE_SECONDS = env.float("JOB_RETRY_BASE_SECONDS", default=5)  # backoff: base * 2**retry
STORAGE_RETRY_AFTER_SECONDS = env.int("STORAGE_RETRY_AFTER_SECONDS", default=5)
DATABASE_RETRY_AFTER_SECONDS = env.int("DATABASE_RETRY_AFTER_SECONDS", default=5)  # database down
ORPHAN_GRACE_SECONDS = env.int("ORPHAN_GRACE_SECONDS", default=3600)  # stored with no row this long: deleted
# Fair queue (webplatform/jobs/dispatch.py): jobs per person published or running at once (set it to the
# cluster's `aging` worker processes, one a core, so one person alone can fill them), jobs per person
# waiting before a request is refused with 429 queue_full, and the Retry-After it carries.
JOB_INFLIGHT_PER_PERSON = env.int("JOB_INFLIGHT_PER_PERSON", default=2)
JOB_QUEUED_PER_PERSON = env.int("JOB_QUEUED_PER_PERSON", default=20)
JOB_QUEUE_FULL_RETRY_AFTER_SECONDS = env.int("JOB_QUEUE_FULL_RETRY_AFTER_SECONDS", default=30)
CELERY_BEAT_SCHEDULE["sweep-jobs"] = {"task": "webplatform.jobs.tasks.jobs_sweep_task",
                                      "schedule": JOB_SWEEP_SECONDS}
# Training runs: the worker beats while a run trains; the sweeper fails a run whose beat is this stale (its
# epsilon stays spent, it never runs again), and republishes a queued run's message after this long.
TRAINING_HEARTBEAT_SECONDS = env.float("TRAINING_HEARTBEAT_SECONDS", default=30)
TRAINING_STALE_SECONDS = env.float("TRAINING_STALE_SECONDS", default=300)
TRAINING_REPUBLISH_SECONDS = env.float("TRAINING_REPUBLISH_SECONDS", default=600)
CELERY_BEAT_SCHEDULE["sweep-training-runs"] = {"task": "webplatform.training.tasks.runs_sweep_task",
                                               "schedule": JOB_SWEEP_SECONDS}
# Redis redelivers a message a killed worker held (acks_late) after this many seconds.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("BROKER_VISIBILITY_TIMEOUT", default=3600)}

# --- differential privacy: the cap per model lineage (DESIGN flow 3) -----------------------------------
DP_EPSILON_CAP = env.float("DP_EPSILON_CAP", default=8.0)
DP_DELTA = env.float("DP_DELTA", default=1e-6)  # a run uses min(DP_DELTA, 1 / (10 N)) for N participants
DP_ACCOUNTANT = env.str("DP_ACCOUNTANT", default="prv")
DP_LINEAGE = env.str("DP_LINEAGE", default="timeveil-small")
# Each person's epsilon over every run that held them, composed (docs/training.md).
DP_USER_EPSILON_CAP = env.float("DP_USER_EPSILON_CAP", default=10.0)
# Below this many eligible people a run is refused: at the default expected batch of 16 the sample rate would
# pass 0.16, so subsampling amplifies little and a useful noise level costs a large epsilon; the released
# count (noise std DP_COUNT_NOISE) would be off by more than 10%; and a few dozen faces teach the model
# nothing measurable (bench/train.py's utility rows).
DP_MIN_PARTICIPANTS = env.int("DP_MIN_PARTICIPANTS", default=100)
# Std of the Gaussian noise on each run's released participant count (sensitivity 1, accounted per run).
DP_COUNT_NOISE = env.float("DP_COUNT_NOISE", default=10.0)
# DP-SGD over this many local processes (Opacus DPDDP; gloo on CPUs, nccl with one GPU a process): the
# same run and epsilon, the noise added once (inference/dp/distributed.py). 1: in the worker's own process.
DP_TRAIN_PROCESSES = env.int("DP_TRAIN_PROCESSES", default=1)
DP_TRAIN_BACKEND = env.str("DP_TRAIN_BACKEND", default="gloo")
# The privacy page and API give PRV's estimate beside the Rényi filter's figure on request, and only for a
# person held by at most this many runs: PRV composes every run on each request, about 0.2 s a run.
DP_PRV_ESTIMATE_MAX_RUNS = env.int("DP_PRV_ESTIMATE_MAX_RUNS", default=5)
# A run's finished_at is shown rounded down to this: its duration grows with the number of faces loaded.
DP_RUN_TIME_GRANULARITY = timedelta(hours=env.int("DP_RUN_TIME_GRANULARITY_HOURS", default=24))

# --- production mode (PRODUCTION=1): refuse to start on settings that are only safe on one laptop -------
PRODUCTION = env.bool("PRODUCTION", default=False)


def production_problems() -> list[str]:
    """What production mode refuses, each with what to set instead (empty: safe to start)."""
    problems = []
    if len(env.str("SECRET_KEY", default="")) < 50:
        problems.append("SECRET_KEY is not set (or shorter than 50 characters): set the same random value "
                        "on every web and worker host, e.g. from "
                        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`")
    if DEBUG:
        problems.append("DEBUG is on: set DEBUG=0")
    if "ALLOWED_HOSTS" not in env.ENVIRON:
        problems.append("ALLOWED_HOSTS is not set: set it to the public host names, "
                        "e.g. ALLOWED_HOSTS=timeveil.example")
    if CACHES["default"]["BACKEND"].endswith(("LocMemCache", "DummyCache", "DjangoCache")):
        problems.append("CACHE_URL is not a shared cache: throttles would count per process or host; set "
                        "CACHE_URL=redis://host:6379/1")
    if CELERY_TASK_ALWAYS_EAGER:
        problems.append("CELERY_BROKER_URL is not set: jobs would run inside web requests; set "
                        "CELERY_BROKER_URL=redis://host:6379/0")
    if EMAIL_BACKEND.endswith(("console.EmailBackend", "locmem.EmailBackend")):
        problems.append("EMAIL_URL is not set: password-reset links would be printed to the log; set "
                        "EMAIL_URL=smtp://user:password@host:587/?tls=True (or dummymail:// to send none)")
    if (VAR_DIR / "demo_credentials.json").exists():
        problems.append(f"demo accounts exist ({VAR_DIR / 'demo_credentials.json'}): delete those users and "
                        "the file; `bootstrap --demo` is for `make run` only")
    return problems


if PRODUCTION and (_problems := production_problems()):
    raise environ.ImproperlyConfigured("Refusing to start in production mode (PRODUCTION=1):\n  - "
                                       + "\n  - ".join(_problems))


def startup_problems() -> list[str]:
    """What any start needs that only `make var` or the operator provides (empty: ready to start)."""
    problems = []
    if not VAR_DIR.is_dir():
        problems.append(f"the data folder {VAR_DIR} does not exist: run `make var` (the first step of "
                        "`make run`), or set TIMEVEIL_VAR_DIR to a folder that exists")
    if not SECRET_KEY:
        problems.append(f"SECRET_KEY is not set and {SECRET_KEY_FILE} does not exist: run `make var`, or set "
                        "SECRET_KEY")
    return problems


if _problems := startup_problems():
    raise environ.ImproperlyConfigured("Refusing to start:\n  - " + "\n  - ".join(_problems))
