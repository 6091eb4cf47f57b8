# Oncelink: `make serve` runs the app, `make test` runs every test, `make bench` measures.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Processes for the tests that start no server (pytest-xdist); the live ones run one at a time.
TEST_JOBS ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HOST PORT

.PHONY: serve test test-fast screenshots lint format bench system-test-tools system-bench-tools

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

serve: $(BIN)/.installed
	$(BIN)/flask --app app bootstrap
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# Debian packages the tests drive for real; installed only when missing. Playwright drives
# Debian's Chromium (it cannot download its own browsers here); the SFTP tests start their own sshd;
# Node writes DBackup's format as DBackup itself does; the PostgreSQL tests start their own cluster.
system-test-tools:
	@missing=""; for tool in curl wget strace; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

# Every test against SQLite, then the ones that need no other live server again against PostgreSQL
# (a temporary cluster for each process of the tests; the two-host tests run with the live ones).
# The tests that start servers run one at a time: they freeze workers, pace readers and count leases.
test: $(BIN)/.installed-dev system-test-tools
	$(BIN)/pytest -m "not live" -n $(TEST_JOBS)
	$(BIN)/pytest -m live
	$(BIN)/pytest --database=postgresql -m "not live" -n $(TEST_JOBS)

# Everything that needs no live server, browser or S3: the loop while working.
test-fast: $(BIN)/.installed-dev
	$(BIN)/pytest -m "not live" -n $(TEST_JOBS)

screenshots: $(BIN)/.installed-dev system-test-tools
	ONCELINK_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/test_e2e_browser.py tests/test_ui_layout_browser.py

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

system-bench-tools: system-test-tools
	@command -v nginx >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nginx-light || $(SUDO) apt-get install -y -qq nginx; }

bench: $(BIN)/.installed-dev system-bench-tools
	$(BIN)/python bench/run.py
