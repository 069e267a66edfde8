# make run  - set up, seed the demo organization into an empty store, serve on 127.0.0.1:$(PORT)
# make test - set up and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
export PORT

.PHONY: run test lint format bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/flask --app wsgi seed-demo --if-empty
	@echo
	@echo "  Organization Audit Log: http://127.0.0.1:$(PORT)/"
	@echo "  Log in as owner@demo.example / demo-owner-pass (Owner),"
	@echo "            admin@demo.example / demo-admin-pass (Admin),"
	@echo "            member@demo.example / demo-member-pass (Member)."
	@echo
	$(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit -q -r audit_app -ll
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-dev
	$(BIN)/python -m bench.capture

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
