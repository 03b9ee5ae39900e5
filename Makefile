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

# A Prefect database migrated once: the tests' Prefect servers start on copies of it (~5 s instead of ~15 s of
# migrations each; tests/conftest.py). Made again after each install, so it follows the installed Prefect.
PREFECT_DB_TEMPLATE := .cache/prefect-db/prefect.db

$(PREFECT_DB_TEMPLATE): $(STAMP)
	rm -rf .cache/prefect-db.tmp && mkdir -p .cache/prefect-db.tmp .cache/prefect-db
	env -u PREFECT_API_DATABASE_CONNECTION_URL -u PREFECT_SERVER_DATABASE_CONNECTION_URL \
		PREFECT_HOME=.cache/prefect-db.tmp PREFECT_SERVER_ANALYTICS_ENABLED=false \
		$(BIN)/prefect server database upgrade -y >/dev/null
	mv .cache/prefect-db.tmp/prefect.db $@ && rm -rf .cache/prefect-db.tmp

demo: $(STAMP)
	$(BIN)/yolo-retrain demo

serve: $(STAMP)
	$(BIN)/yolo-retrain serve

# Two workers: tests that wait on servers and subprocesses overlap with those that train (units: tests/conftest.py).
test: $(STAMP) $(LS_TEMPLATE_STAMP) $(PREFECT_DB_TEMPLATE)
	$(BIN)/python -m pytest -q -n 2 --dist loadscope

clean:
	rm -rf .yolo-retrain
