# The two commands README.md opens with. Each installs what it needs by itself.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: demo test lint type docs bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[all]' tox
	touch $@

## demo: build a small image, store it in the embedded default, list, export, verify;
## then migrate LXD -> Glance -> LXD (local -> Glance -> local without LXD), same fingerprint
demo: $(VENV)/.installed
	$(PY) -m imagehub.demo
	$(PY) -m tests.servers demo

## test: provision real servers (LXD, Keystone, Glance), then lint, types, docs and tests
test: $(VENV)/.installed
	$(PY) -m tests.servers provision
	$(VENV)/bin/tox run -e lint,type,docs,tests

bench: $(VENV)/.installed
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .tox build dist docs/_build *.egg-info
