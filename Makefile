# Two commands on a fresh machine (docs/install.md):
#   make demo   create .venv if missing, install yopo with its data extra, run the `yopo train` demo
#   make test   create .venv if missing, install yopo with its dev extra, run the test suite
# The torch pin is a variable: `make test TORCH="torch torchvision"` takes whatever your index has.

PYTHON ?= python3
VENV ?= .venv
# the versions yopo is tested with (docs/install.md says why and how to change them)
TORCH ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -q -n 2

BIN := $(VENV)/bin

.PHONY: demo test install clean

demo: $(VENV)/.installed-data
	$(BIN)/yopo train

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# one stamp per extra: `make demo` installs less than `make test`; editing pyproject.toml reinstalls
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[$*]"
	touch $@

clean:
	rm -rf $(VENV)
