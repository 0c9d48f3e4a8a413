# The two commands: `make run` (server + embedded database) and `make test` (the whole suite).
# Each creates .venv and installs what it needs on first use; later runs reuse it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install clean bench

run: $(STAMP)
	$(PY) -m livechat

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

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
