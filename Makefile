# efficient-bert: install, test and demo. Every target works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k collator -x"`.
PYTEST_ARGS ?=

.PHONY: install test demo clean-venv

install: $(VENV)/.installed

# The stamp is rebuilt whenever a requirement changes. Order matters: torch first (pinned), then the
# package (constrained to that torch so no step can fetch another one), then Composer and streaming
# without their stale dependency pins.
$(VENV)/.installed: pyproject.toml requirements/torch.txt requirements/composer.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/torch.txt
	$(BIN)/python -m pip install -q -c requirements/torch.txt -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps -r requirements/composer.txt
	$(BIN)/python scripts/check_install.py
	touch $@

# The slowest tests are listed at the end. pytest exits 5 when it collects nothing (e.g. a -k filter that
# matches no test): say so, don't fail.
test: install
	$(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5) for: $(PYTEST_ARGS)"; exit 0; fi; exit $$rc

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

clean-venv:
	rm -rf $(VENV)
