# Looplab: `make demo` runs the app on the embedded default; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := libusb-1.0-0 libsndfile1 chromium espeak-ng sox
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install apt venv npm fixtures demo test test-fast services bench clean

install: apt venv npm fixtures

# Debian packages: open3d needs libusb, soundfile needs libsndfile, browser tests need chromium,
# the audio fixtures need espeak-ng and sox. Installed only where missing.
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# venv: the app with its extras, and the example learner plug-in (plugins/looplab-sklearn-probe: the entry point
# looplab.learners sklearn-probe, used by the tests)
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml plugins/looplab-sklearn-probe/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[quality,dev]'
	$(PY) -m pip install -q --no-deps -e ./plugins/looplab-sklearn-probe
	touch $@

npm: labeling_ui/node_modules/.installed
labeling_ui/node_modules/.installed: labeling_ui/package.json labeling_ui/package-lock.json
	cd labeling_ui && npm ci --no-audit --no-fund --loglevel=error
	touch $@

fixtures: venv
	$(PY) -m fixtures.build

services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	$(PY) manage.py run_embedded

test: install services
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests

bench: install
	$(PY) -m bench.label_efficiency --quick

clean:
	rm -rf $(VENV) labeling_ui/node_modules var test-artifacts bench/out
