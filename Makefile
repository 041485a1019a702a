# hapair-lab: `make lab-up` and `make test` are all a fresh Debian 12 machine (as root) needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB_NAME ?= hapair
PROFILE ?= seed
PYTEST_ARGS ?=
# what a node is: namespace (the host's userland) or docker (a container from a node image)
BACKEND ?= namespace
SUITE ?= bookworm
IMAGE ?=
RUN_ID := $(shell date +%Y%m%d-%H%M%S)

# Debian packages the lab runs (the real daemons) or needs to build nodes and probe them.
APT_PACKAGES := dnsmasq heartbeat drbd-utils ddclient isc-dhcp-client nftables iproute2 \
	tcpdump fuse3 libfuse3-3 tini psmisc e2fsprogs util-linux procps iputils-ping \
	iputils-arping kmod openssl ca-certificates tmux python3-venv \
	libio-socket-ssl-perl chromium bind9-dnsutils ldnsutils mininet bridge-utils
# the docker backend: Debian's engine (the lab starts its own daemon) and what builds images;
# `make test` and `make bench` use it too (a part of the suite runs on docker nodes)
DOCKER_PACKAGES := docker.io debootstrap
ifeq ($(BACKEND),docker)
APT_PACKAGES += $(DOCKER_PACKAGES)
endif
# what `make test` runs a second time on docker nodes (skipped when PYTEST_ARGS narrows the run)
DOCKER_SUITE ?= scenarios/test_foundation.py scenarios/test_lab_health.py \
	scenarios/test_replicator.py scenarios/test_failover.py::test_kill_primary

.PHONY: help setup image host-packages lab-up lab-down test soak bench lint clean nightly

help:
	@echo "make lab-up     install what is missing, bring the seed's pair up (LAB_NAME=$(LAB_NAME), PROFILE=$(PROFILE), BACKEND=namespace|docker)"
	@echo "make lab-down   remove that lab"
	@echo "make test       install what is missing, run unit tests and scenarios (JUnit in results/)"
	@echo "make soak N=10  the whole suite N times in a row -> results/soak.json, flaky tests first"
	@echo "make bench      benchmarks -> bench/results.json"
	@echo "make nightly    the scenarios in profile seed x3 against fixtures/slas.toml -> results/report.html"
	@echo "make lint       ruff + mypy"

setup: host-packages $(STAMP) $(if $(filter docker,$(BACKEND)),image)

# the node image of SUITE (cached: seconds once its root filesystem was built)
image: host-packages $(STAMP)
	$(BIN)/lab image build --suite $(SUITE)

# Installs only what is missing. A policy-rc.d stops the packages from starting their daemons
# in the root namespace at install time: the lab runs them only inside its own nodes.
host-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  policy=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy=1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; rc=$$?; \
	  if [ $$policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  exit $$rc; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

lab-up: setup
	$(BIN)/lab up --name $(LAB_NAME) --profile $(PROFILE) --backend $(BACKEND) $(if $(IMAGE),--image $(IMAGE))

lab-down: setup
	$(BIN)/lab down --name $(LAB_NAME)

test: APT_PACKAGES += $(DOCKER_PACKAGES)
test: setup image
	@mkdir -p results/$(RUN_ID)
	HAPAIR_RUN_ID=$(RUN_ID) $(BIN)/python -m pytest -n 2 --lab-pool 1 --lab-backend $(BACKEND) --junitxml=results/$(RUN_ID)/junit.xml $(PYTEST_ARGS); main=$$?; \
	docker=0; if [ -n "$(strip $(DOCKER_SUITE))" ] && [ -z "$(strip $(PYTEST_ARGS))" ] && [ "$(BACKEND)" != docker ]; then \
	  echo "== the same scenarios on docker nodes: $(strip $(DOCKER_SUITE))"; \
	  HAPAIR_RUN_ID=$(RUN_ID) $(BIN)/python -m pytest -n 2 --lab-pool 1 --lab-backend docker --junitxml=results/$(RUN_ID)/junit-docker.xml $(DOCKER_SUITE); docker=$$?; \
	fi; \
	exit $$(( main != 0 ? main : docker ))

soak: setup
	$(BIN)/python -m lab.soak --runs $(or $(N),10) -- --lab-pool 1 $(PYTEST_ARGS)

# The nightly: every scenario 3 times in the seed's own timing, judged against the SLAs, then
# the history as a page. Fails on any SLA breach (pytest) or regression (lab report --check);
# the report is written either way.
NIGHTLY_ID := nightly-$(RUN_ID)
nightly: setup
	@mkdir -p results/$(NIGHTLY_ID)
	HAPAIR_RUN_ID=$(NIGHTLY_ID) $(BIN)/python -m pytest -n 2 --lab-pool 1 --lab-profile seed --repeat 3 \
	  scenarios/ --sla fixtures/slas.toml --junitxml=results/$(NIGHTLY_ID)/junit.xml \
	  $(PYTEST_ARGS); tests=$$?; \
	$(BIN)/lab report --check --out results/report.html; report=$$?; \
	exit $$(( tests != 0 ? tests : report ))

bench: APT_PACKAGES += $(DOCKER_PACKAGES)
bench: setup image
	$(BIN)/python -m lab.bench --out bench/results.json

lint: setup
	$(BIN)/ruff check lab tests scenarios conftest.py
	$(BIN)/mypy

clean:
	-$(BIN)/lab down --all
	rm -rf results .pytest_cache .mypy_cache .ruff_cache
