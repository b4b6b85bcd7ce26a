# Two set-up-and-run targets for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install test demo

install:
	@command -v adb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adb)
	# torch first, pinned, so pip takes the CPU wheel from disk instead of a CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'

test: install
	$(PYTHON) -m pytest -q

demo: install
	$(PYTHON) -m search.cli.demo
