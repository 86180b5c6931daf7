# The two commands README.md opens with. Each installs what it needs by itself.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: demo test lint type docs bench clean

# tox runs the suite on every Python setup.cfg promises (3.10, 3.11, 3.13) and finds them
# as python3.10 ... on PATH. Under pyenv those are shims that answer only for versions
# PYENV_VERSION names, so name the newest installed of each (3.11 first: it stays the
# default python3). A PYENV_VERSION set by the caller wins.
ifeq ($(origin PYENV_VERSION),undefined)
ifneq ($(shell command -v pyenv 2>/dev/null),)
PYENV_VERSION := $(shell for v in 3.11 3.10 3.13; do pyenv versions --bare 2>/dev/null | \
	grep -E "^$$v\.[0-9]+$$" | sort -V | tail -n 1; done | paste -sd: -)
export PYENV_VERSION
endif
endif

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

## test: provision real servers (LXD, Keystone, Glance), then lint, types, docs, and the
## full suite on Python 3.10, 3.11 and 3.13, one after another (they share the servers' caches)
test: $(VENV)/.installed
	$(PY) -m tests.servers provision
	$(VENV)/bin/tox run

bench: $(VENV)/.installed
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .tox build dist docs/_build *.egg-info
