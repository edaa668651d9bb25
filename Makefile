# Two set-up commands (see README): `make lab` and `make test`.
# Both create .venv and install the project into it when needed, and skip the install
# when pyproject.toml has not changed since the last one.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= dev,dist
PORT ?= 8888
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
export LAB_STORE ?= $(CURDIR)/runs/lab.sqlite

.PHONY: lab test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	@touch $(STAMP)

lab: $(STAMP)
	@echo "Starting JupyterLab on notebooks/ at 127.0.0.1:$(PORT); open the URL with the token printed below."
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=$(PORT) --ServerApp.root_dir=notebooks $(ROOT_FLAG)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  echo "NOTE: chromium not found, so the real-browser test (marker ui) will be SKIPPED; install it with 'apt-get install chromium'."
	LAB_QUICK=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
