# The two commands: `make run` (server + embedded database) and `make test` (the whole suite).
# Each creates .venv and installs what it needs on first use; later runs reuse it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install clean bench preflight

run: $(STAMP)
	$(PY) -m livechat

test: $(STAMP) preflight
	$(PY) -m pytest $(PYTEST_ARGS)

# The browser tests (tests/browser) drive the system Chromium. Missing: root with apt-get installs
# Debian's, as .ci/run does; anyone else (or LIVECHAT_NO_INSTALL=1, or a LIVECHAT_CHROMIUM that is
# not there) gets one line saying what to run, before any test starts.
CHROMIUM := $(or $(LIVECHAT_CHROMIUM),/usr/bin/chromium)
preflight:
	@test -x "$(CHROMIUM)" || { \
	  if [ "$(CHROMIUM)" = /usr/bin/chromium ] && [ -z "$(LIVECHAT_NO_INSTALL)" ] && [ "$$(id -u)" = 0 ] \
	     && command -v apt-get >/dev/null; then \
	    echo "make test: installing Chromium for the browser tests (apt-get install chromium)"; \
	    apt-get update -qq && apt-get install -y -qq chromium; \
	  else \
	    echo "make test: no Chromium at $(CHROMIUM) for the browser tests; run: sudo apt-get install chromium (or set LIVECHAT_CHROMIUM=/path/to/chromium)" >&2; \
	    exit 2; \
	  fi; }

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

install: $(STAMP)

# Reinstalls when setup.py changes; SecantusDB is a pre-release, hence the explicit floor in setup.py.
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[embedded,test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) data .pytest_cache
