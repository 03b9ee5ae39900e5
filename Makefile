# The two commands a new user needs: `make demo` and `make test`. Each creates .venv and installs if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test serve clean labelstudio

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Label Studio (for tests/test_labelstudio_live.py and by hand): its own virtualenv (it pins its own dependencies),
# and a data dir migrated once (the first start migrates for minutes; the tests start on copies of it).
LS_VENV := .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed
LS_TEMPLATE := .cache/labelstudio/template
LS_TEMPLATE_STAMP := $(LS_TEMPLATE)/.migrated

$(LS_STAMP):
	test -d $(LS_VENV) || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install --quiet --upgrade pip
	$(LS_VENV)/bin/pip install --quiet 'label-studio==1.23.2'
	touch $(LS_STAMP)

$(LS_TEMPLATE_STAMP): $(LS_STAMP)
	$(LS_VENV)/bin/python tests/labelstudio_server.py template $(LS_TEMPLATE)

labelstudio: $(LS_TEMPLATE_STAMP)

demo: $(STAMP)
	$(BIN)/yolo-retrain demo

serve: $(STAMP)
	$(BIN)/yolo-retrain serve

# Two workers: tests that wait on servers and subprocesses overlap with those that train (units: tests/conftest.py).
test: $(STAMP) $(LS_TEMPLATE_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadscope

clean:
	rm -rf .yolo-retrain
