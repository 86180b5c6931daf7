# The two commands README.md opens with. Each installs what it needs by itself.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: demo test lint type docs bench clean

# tox runs the suite on every Python setup.cfg promises (3.10, 3.11, 3.13) and looks for
# python3.10 ... on PATH. pyenv's shims are not enough (tox's interpreter discovery passes
# over them), so put the bin directory of the newest installed pyenv version of each on
# PATH, after what is there already.
PYENV_ROOT_DIR := $(shell pyenv root 2>/dev/null)
ifneq ($(PYENV_ROOT_DIR),)
PYENV_BINS := $(shell for v in 3.10 3.11 3.13; do pyenv versions --bare 2>/dev/null | \
	grep -E "^$$v\.[0-9]+$$" | sort -V | tail -n 1; done | \
	sed "s|.*|$(PYENV_ROOT_DIR)/versions/&/bin|" | paste -sd: -)
ifneq ($(PYENV_BINS),)
export PATH := $(PATH):$(PYENV_BINS)
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
