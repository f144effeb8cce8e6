# The one entry point: `make run` starts everything locally, `make test` proves it all.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .venv-tools
CHECKS := .venv-checks
PY := $(VENV)/bin/python
SAM := $(TOOLS)/bin/sam
REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
export PYTHONPATH := $(CURDIR)/layers/shared/python

.PHONY: doctor install run invoke client test lint typecheck template openapi build unit integration e2e bench browser clean webhook-dead-letters webhook-redrive

# Is this machine ready? Python, venv, Java, Node, npm, free ports, Chromium; each failure says how to fix it.
doctor:
	@$(PYTHON) -m scripts.doctor

$(VENV)/.installed: requirements-dev.txt layers/shared/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(TOOLS)/.installed: requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check -r requirements-tools.txt
	touch $@

$(CHECKS)/.installed: requirements-checks.txt
	$(PYTHON) -m venv $(CHECKS)
	$(CHECKS)/bin/pip install --quiet --disable-pip-version-check -r requirements-checks.txt
	touch $@

node_modules/.installed: package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js and npm (Debian/Ubuntu: apt-get install nodejs npm)" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium for the browser tests (no browser is ever downloaded by a test tool). Found where it is
# (CHROMIUM_PATH, chromium, chromium-browser, google-chrome); installed as root, or with sudo only if it never
# prompts; otherwise the browser tests skip and say why.
browser:
	@$(PYTHON) -m local.browser >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		elif sudo -n true 2>/dev/null; then sudo -n apt-get update -qq && sudo -n apt-get install -y -qq chromium >/dev/null; \
		else echo "Chromium is missing and cannot be installed without a password: the browser tests will skip." \
			"Install it (sudo apt-get install chromium) or set CHROMIUM_PATH." >&2; fi; }

install: $(VENV)/.installed $(TOOLS)/.installed $(CHECKS)/.installed node_modules/.installed

run: $(VENV)/.installed node_modules/.installed
	@command -v java >/dev/null || { echo "java is missing: DynamoDB Local runs on it; install a Java runtime (Debian/Ubuntu: apt-get install default-jre-headless)" >&2; exit 1; }
	$(PY) -m local.runner

# Replay an event file through a function against make run's DynamoDB: make invoke FUNCTION=InitiateFunction EVENT=events/providers-list.json
invoke: $(VENV)/.installed
	@test -n "$(FUNCTION)" -a -n "$(EVENT)" || { echo "usage: make invoke FUNCTION=InitiateFunction EVENT=events/providers-list.json" >&2; exit 2; }
	@$(PY) -m scripts.invoke "$(FUNCTION)" "$(EVENT)"

# Register or revoke an API client (make run's DynamoDB by default; a deployed table with --table): make client ARGS='register --name Site --prefix https://site.example/cal/'
client: $(VENV)/.installed
	@$(PY) -m scripts.clients $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# sam's own lint, the serverless rules, and checkov; each suppression is justified in template.yaml.
template: $(TOOLS)/.installed $(CHECKS)/.installed
	$(SAM) validate --lint --region $(REGION)
	$(CHECKS)/bin/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules
	$(CHECKS)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download

# docs/openapi.json from the code (tests/unit/test_openapi_document.py fails when it drifts).
openapi: $(VENV)/.installed
	$(PY) -m scripts.openapi

# Webhook dead letters (docs/webhooks.md): list them, or make them due again. WEBHOOK_DELIVERIES_TABLE names the table.
webhook-dead-letters: $(VENV)/.installed
	$(PY) -m scripts.webhooks dead-letters

webhook-redrive: $(VENV)/.installed
	$(PY) -m scripts.webhooks redrive

build: $(TOOLS)/.installed
	PYTHON=$(CURDIR)/$(VENV)/bin/python $(SAM) build --region $(REGION) --no-cached

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

integration: $(VENV)/.installed node_modules/.installed
	$(PY) -m pytest tests/integration

e2e: $(VENV)/.installed node_modules/.installed browser
	$(PY) -m pytest tests/e2e

test: install browser lint typecheck template build
	$(PY) -m pytest tests

bench: $(VENV)/.installed node_modules/.installed
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(TOOLS) $(CHECKS) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache
