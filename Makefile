# teamflow.platform: the two commands a user needs are `make lab` and `make test`.
# Both set up what is missing on a fresh Debian machine (virtualenv, Docker
# engine, base image) first.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      ?= python3
SUITE       ?= bookworm
# lanes of `make test`: the checks and the scenarios split in JOBS groups of about
# equal length (tests/conftest.py); JOBS=1 runs them one after the other
JOBS        ?= 2
# lab/bin first: its `docker` runs `docker exec` into the lab's containers without the
# daemon's round trip (lab/bin/docker says how); the venv's tools next
export PATH := $(CURDIR)/lab/bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help venv engine image lab lab-destroy test lint unit molecule bench readme docs release

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## Create .venv/ with the pinned Python dependencies

engine: ## Install and start the Docker engine (and the lab's apt cache) if needed
	lab/ensure-engine.sh

image: engine ## Build the lab's Debian base image if its recipe changed
	lab/build-image.sh $(SUITE)

lab: venv image ## Start the lab (molecule scenario `site`) and converge playbooks/site.yml on it
	MOLECULE_IMAGE=$$(lab/build-image.sh $(SUITE)) lab/lab.sh up

lab-destroy: venv engine ## Remove the lab (its containers, helpers and network)
	lab/lab.sh destroy

test: venv image ## Run every check: lint, sanity, unit tests, every molecule scenario
	MOLECULE_IMAGE=$$(lab/build-image.sh $(SUITE)) $(VENV)/bin/pytest $(if $(filter-out 1,$(JOBS)),-n $(JOBS) --dist loadscope --no-loadscope-reorder) $(PYTEST_ARGS)

lint: venv ## Only the static checks (yamllint, ansible-lint, sanity, flake8, specs)
	$(VENV)/bin/pytest -m static $(PYTEST_ARGS)

unit: venv ## Only the Python unit tests of the collection's plugins
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

molecule: venv image ## Only the molecule scenarios (SCENARIO=name for one)
	MOLECULE_IMAGE=$$(lab/build-image.sh $(SUITE)) $(VENV)/bin/pytest -m molecule $(if $(SCENARIO),-k "molecule and $(SCENARIO)") $(PYTEST_ARGS)

bench: venv image ## Benchmark the stack on a fresh lab (about 80 min): table, JSON and PNGs in benchmarks/results/ [BENCH_ARGS=--phases load]
	MOLECULE_IMAGE=$$(lab/build-image.sh $(SUITE)) $(VENV)/bin/python benchmarks/bench.py $(BENCH_ARGS)

readme: venv ## Regenerate the variables section of every role README
	$(VENV)/bin/python tools/role_readme.py --write

docs: venv ## Build the collection's docs site into artifacts/docs/html (antsibull-docs, Sphinx)
	tools/collection_docs.sh

release: venv ## Build the reference app's release artifact: VERSION=1.2.0 [RELEASE_PYTHON=3.11] [BROKEN=health]
	@test -n "$(VERSION)" || { echo "make release VERSION=1.2.0"; exit 2; }
	PIP=$(CURDIR)/$(VENV)/bin/pip reference-app/build-release.sh $(VERSION)
