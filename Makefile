# Two set-up commands (see README): `make lab` and `make test`.
# Both create .venv and install the project into it when needed, and skip the install
# when pyproject.toml has not changed since the last one.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= dev,dist
PORT ?= 8888
NOTEBOOK ?= notebooks/00_tour.ipynb
DEMO_PORT ?= 8866
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
export LAB_STORE ?= $(CURDIR)/runs/lab.sqlite

.PHONY: lab demo test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	@touch $(STAMP)

lab: $(STAMP)
	@echo "Starting JupyterLab on notebooks/ at 127.0.0.1:$(PORT); open the URL with the token printed below."
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=$(PORT) --ServerApp.root_dir=notebooks $(ROOT_FLAG)

# Teaching mode: one notebook as an app (Voila: outputs and widgets, no code), quick mode with LAB_QUICK=1.
# --token makes Voila generate a token and print it in the URL (Voila's default is no token at all). Standalone
# Voila has no root check, so it takes no --allow-root (it rejects the flag) and runs as root as it is.
demo: $(STAMP)
	@test -f "$(NOTEBOOK)" || { echo "make demo: no notebook at NOTEBOOK=$(NOTEBOOK)"; exit 2; }
	@echo "Starting Voila on $(NOTEBOOK) at 127.0.0.1:$(DEMO_PORT) in $(if $(filter 1,$(LAB_QUICK)),quick,full) mode; open the URL with the token printed below."
	$(BIN)/voila "$(NOTEBOOK)" --no-browser --Voila.ip=127.0.0.1 --port=$(DEMO_PORT) --token

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  echo "NOTE: chromium not found, so the real-browser test (marker ui) will be SKIPPED; install it with 'apt-get install chromium'."
	LAB_QUICK=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
