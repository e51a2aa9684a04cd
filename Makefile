# Timeveil: two commands. `make run` serves on embedded defaults; `make test` sets up and runs the suite.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
PG_URL  ?= postgres://postgres@127.0.0.1:5432/test
HOST    ?= 127.0.0.1:8000
# Embedded mode's data folder: the settings read it and write nothing on import, so `make var` prepares it.
VAR_DIR := $(or $(TIMEVEIL_VAR_DIR),var)

.PHONY: run var test setup lint typecheck test-sqlite test-postgres test-hostile bench clean

$(STAMP): pyproject.toml requirements.lock
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c requirements.lock -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# The data folder (0700) and a secret key kept in it (0600), made once; SECRET_KEY in the environment wins.
$(VAR_DIR)/secret_key:
	mkdir -p -m 700 $(VAR_DIR)
	umask 077 && python3 -c "import secrets; print(secrets.token_urlsafe(50))" > $@.tmp && mv $@.tmp $@

var: $(VAR_DIR)/secret_key

# A real server: gunicorn threads (runserver's backlog of 10 resets connections under load), static files
# collected once and served by whitenoise, the periodic sweeper and retention in each worker process.
# Timeouts, graceful shutdown, keep-alive and backlog: gunicorn.conf.py, which gunicorn reads from here.
WEB_WORKERS ?= 2
WEB_THREADS ?= 16

run: setup var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap --demo
	$(PY) manage.py collectstatic --noinput -v 0
	EMBEDDED_SCHEDULER=1 .venv/bin/gunicorn webplatform.wsgi -b $(HOST) -w $(WEB_WORKERS) --threads $(WEB_THREADS) \
		--access-logfile -

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

# The whole suite on SQLite, then again on the local PostgreSQL when it answers (CI has one).
test: setup lint test-sqlite test-postgres

test-sqlite: setup
	DATABASE_URL=sqlite:///:memory: .venv/bin/pytest -q -n 2 --dist loadfile

test-postgres: setup
	@if $(PY) -c "import psycopg,sys; psycopg.connect('$(PG_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		DATABASE_URL=$(PG_URL) .venv/bin/pytest -q -n 2 --dist loadfile; \
	else echo "PostgreSQL at $(PG_URL) does not answer: skipping the PostgreSQL run"; fi

# Outside `make test` (a few minutes, downloads once): Pillow's own test images (odd, truncated, fuzzer-found
# files, from the sdist of the pinned Pillow) through the upload API, and schemathesis against /api/schema/.
HOSTILE        := var/hostile
PILLOW_VERSION := $(shell grep -i '^pillow==' requirements.lock | cut -d= -f3)
PILLOW_IMAGES  := $(HOSTILE)/pillow-$(PILLOW_VERSION)/Tests/images

$(PILLOW_IMAGES):
	mkdir -p $(HOSTILE)
	$(PIP) download -q pillow==$(PILLOW_VERSION) --no-binary :all: --no-deps -d $(HOSTILE)
	tar -xzf $(HOSTILE)/pillow-$(PILLOW_VERSION).tar.gz -C $(HOSTILE) pillow-$(PILLOW_VERSION)/Tests/images

test-hostile: setup $(PILLOW_IMAGES)
	DATABASE_URL=sqlite:///:memory: HOSTILE_IMAGES=$(PILLOW_IMAGES) HOSTILE_SCHEMATHESIS=1 \
		.venv/bin/pytest -q -n 2 --dist loadfile tests/hostile

bench: setup
	$(PY) bench/upload.py

clean:
	rm -rf .venv var
