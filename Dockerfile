# Timeveil in a container: one image for every process, the command picks which (README, "Running it at
# scale"). Built from this checkout with the pinned lock file; runs as the unprivileged user `timeveil`.
#   docker build -t timeveil .
#   docker run --env-file /etc/timeveil.env -p 8000:8000 timeveil                      # web
#   docker run --env-file /etc/timeveil.env -e OPENCV_FOR_THREADS_NUM=1 -e OMP_NUM_THREADS=1 \
#       timeveil celery -A webplatform worker -Q aging --prefetch-multiplier 1   # aging: a process per CPU
# The data folder /var/lib/timeveil (keyring file, static files, beat's schedule) is a volume when used.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TIMEVEIL_VAR_DIR=/var/lib/timeveil \
    TIMEVEIL_READ_DOTENV=0 \
    PATH=/opt/timeveil/.venv/bin:$PATH

# OpenCV and torch's CPU kernels need these shared libraries from Debian; nothing else is installed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# The service account: no login shell, no password, owns only the data folder.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/timeveil --shell /usr/sbin/nologin timeveil \
    && install -d -m 0700 -o timeveil -g timeveil /var/lib/timeveil

WORKDIR /opt/timeveil
# Dependencies first (their layer is reused while only the code changes): the runtime ones of pyproject.toml,
# at the versions the lock file pins (no dev or bench tools).
COPY pyproject.toml requirements.lock ./
RUN python -m venv .venv \
    && .venv/bin/pip install -c requirements.lock .
# The code, owned by root and read-only to the service user.
COPY manage.py ./
COPY governance ./governance
COPY inference ./inference
COPY webplatform ./webplatform
COPY templates ./templates
RUN .venv/bin/pip install --no-deps -e .

USER timeveil
VOLUME ["/var/lib/timeveil"]
EXPOSE 8000
# The web process by default; static files are collected into the data folder at start.
CMD ["sh", "-c", "python manage.py collectstatic --noinput -v 0 && exec gunicorn webplatform.wsgi -w 4 --threads 8 -b 0.0.0.0:8000 --timeout 120"]
