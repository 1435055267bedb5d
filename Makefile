# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed
# locked packages installed without their declared dependencies (medmnist declares torchvision,
# which would replace the torch above; medaug imports none of it)
NODEPS  := medmnist

.PHONY: install demo test clean browser

$(STAMP): pyproject.toml requirements-lock.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, exact version: on the reference machine this is the local CPU wheel.
	$(BIN)/pip install -q $(TORCH)
	grep -v -E '^($(NODEPS))==' requirements-lock.txt > $(VENV)/requirements-deps.txt
	$(BIN)/pip install -q -r $(VENV)/requirements-deps.txt
	$(BIN)/pip install -q --no-deps $$(grep -E '^($(NODEPS))==' requirements-lock.txt)
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The demo: synthetic radiographs, 5 methods x 2 seeds (tiny CNN, 64 px), the table and a report.
demo: $(STAMP)
	$(BIN)/medaug demo

# Headless Chromium for tests/test_html_browser.py (Debian's package; ~20 s with apt as root).
# Never fails the build: without apt or root the browser test skips and says how to install.
# BROWSER=0 skips this step.
BROWSER ?= 1
browser:
ifeq ($(BROWSER),1)
	-@command -v chromium >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1; } \
		|| echo "chromium not installed: browser test will skip (Debian: apt-get install -y chromium)"
endif

# lint-imports: the import layers of pyproject.toml [tool.importlinter] (docs/architecture.md)
test: $(STAMP) browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) demo-data demo-runs
