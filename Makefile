# The two commands a new user needs: `make demo` and `make test`. Each creates .venv and installs if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test serve clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/yolo-retrain demo

serve: $(STAMP)
	$(BIN)/yolo-retrain serve

# Two workers: tests that wait on servers and subprocesses overlap with those that train (units: tests/conftest.py).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadscope

clean:
	rm -rf .yolo-retrain
