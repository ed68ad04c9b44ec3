# clinical-upgrade: the two commands of the README, and the pieces they are made of.
#   make demo   set up everything missing, build the lab, run the main job on it
#   make test   lint and every test (unit tests against real DICOM/HL7 peers, Molecule)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
BIN         := $(VENV)/bin
PYTHON      ?= python3
STAMP_DIR   := $(VENV)/.stamps
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
export ANSIBLE_CONFIG  := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

DEB_PACKAGES := openssh-client chromium podman runc debootstrap uidmap slirp4netns dcmtk orthanc lvm2 python3-venv openssl make nginx-light apt-cacher-ng logrotate dnf dnf-plugins-core rpm createrepo-c

.PHONY: help deps venv bench-deps images artifacts lab-up lab-down verify upgrade demo lint unit integration molecule test clean

help:
	@echo "make demo      install what is missing, bring the lab up, upgrade its PACS, verify"
	@echo "make test      lint + unit tests + Molecule scenarios"
	@echo "make lab-up    bring the lab up (idempotent);  make lab-down removes its containers"
	@echo "make verify    run the clinical health check against the lab"
	@echo "make upgrade   upgrade the lab PACS (Orthanc 1.10.1 -> 1.12.7) with automatic rollback"

# Debian packages: installed only when one is missing (needs root).
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  systemctl disable --now orthanc nginx apt-cacher-ng >/dev/null 2>&1 || true; service apt-cacher-ng stop >/dev/null 2>&1 || true; \
	else echo "deps: Debian packages present"; fi

# The virtualenv with the project's Python dependencies; reinstalled only when pyproject.toml changes.
venv: $(STAMP_DIR)/venv
$(STAMP_DIR)/venv: pyproject.toml | deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@mkdir -p $(STAMP_DIR) && touch $@

# The peers the migration and reconciliation benchmarks measure against (bench/README.md), not needed
# to run or test the project. orthanc-tools 0.23.0 pins hl7 0.4.2, older than the project accepts; its
# cloner and comparator do not use hl7, so the project's hl7 is put back after it.
bench-deps: venv
	$(PY) -m pip install -q 'orthanc-tools==0.23.0'
	$(PY) -m pip install -q 'hl7>=0.4.5,<0.5'
	$(PY) -c 'import orthanc_tools.orthanc_comparator, orthanc_tools.orthanc_cloner, hl7'

images: deps
	lab/build-image.sh debian12
	lab/build-image.sh debian13

# The lab's release archives (the cu-ris RIS), built reproducibly: the lab catalogue pins their sha256.
artifacts: venv
	$(PY) tools/build_ris_release.py --all lab/artifacts >/dev/null

lab-up: deps venv artifacts
	$(BIN)/ansible-playbook playbooks/lab.yml

lab-down: venv
	$(BIN)/ansible-playbook playbooks/lab_down.yml

verify: venv
	$(BIN)/ansible-playbook playbooks/verify.yml

upgrade: venv
	$(BIN)/ansible-playbook playbooks/upgrade_pacs.yml

demo: lab-up
	$(BIN)/ansible-playbook playbooks/upgrade_pacs.yml
	$(BIN)/ansible-playbook playbooks/upgrade_ris.yml
	$(BIN)/ansible-playbook playbooks/patch_workstations.yml
	$(BIN)/ansible-playbook playbooks/verify.yml
	@echo
	@echo "demo: upgrade evidence: $(CURDIR)/results/upgrade-latest-pacs1.json"
	@echo "demo:                   $(CURDIR)/results/upgrade-latest-ris1.json"
	@echo "demo: workstations:     $(CURDIR)/results/fleet-latest.json"
	@echo "demo: health check:     $(CURDIR)/results/verify-latest.json"

lint: venv
	$(BIN)/yamllint -s .
	$(BIN)/ruff check .
	$(BIN)/ansible-lint
	@for m in plugins/modules/*.py; do \
	  n=$$(basename $$m .py); \
	  $(BIN)/ansible-doc -M plugins/modules $$n >/dev/null || { echo "ansible-doc fails for $$n"; exit 1; }; \
	done; echo "ansible-doc: every module renders"

# The unit tests compute: two processes, a test file each at a time.
UNIT_PYTEST_ARGS := -n 2 --dist loadfile
unit: deps venv
	$(BIN)/pytest $(UNIT_PYTEST_ARGS) tests/unit

integration: deps venv images
	$(BIN)/pytest tests/integration

# Every test in two lanes at once (the machine's two cores): the items of a lane one after the other,
# every scenario in exactly one lane (tools/test_lanes.sh refuses otherwise). Each lane starts with a
# pytest suite: the unit tests (which compute) beside the integration tests (which mostly wait on
# podman), then each lane's scenarios as its suite ends, so that neither core waits for the other
# lane's suite. The PACS scenarios of lane 1 use the host mol-upgrade-pacs, those of lane 2 mol-pacs2;
# a published port or a container name is shared only within a lane (tests/unit/test_molecule_ports.py).
# The integration suite configures the machine's apt-cacher-ng service, which the workstations
# scenario runs the site cache on: both are in lane 2, the suite first (tests/unit/test_test_lanes.py).
# Two lanes, never three: a third made the machine too slow for pacs_rollback's 60-second
# back-in-service check (docs/testing.md). The lanes are balanced by the items' times in CI.
TEST_LANES := "unit lab pacs_upgrade pacs_precheck_refusal pacs_rollback ris_upgrade migration windows" "integration pacs_resume ris_rollback workstations"
molecule: deps venv images artifacts
	tools/test_lanes.sh --molecule-only $(TEST_LANES)

test: lint images artifacts
	PYTEST_UNIT_ARGS="$(UNIT_PYTEST_ARGS)" tools/test_lanes.sh $(TEST_LANES)

clean: lab-down
	rm -rf results
