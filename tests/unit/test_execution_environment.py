"""execution-environment.yml (ansible-builder v3) and what it installs: the build context ansible-builder
writes, the Python requirements against pyproject.toml, the system packages as bindep reads them, and
the collections (collections/requirements.yml, where AWX looks). No image is built here: no registry."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from bindep.depends import Depends
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
BUILDER = Path(sys.executable).parent / "ansible-builder"
# Installed by execution-environment.yml's ansible_core and ansible_runner, not by requirements.txt.
PINNED_BY_THE_EE = {"ansible-core", "ansible-runner", "ansible"}


def test_ansible_builder_writes_the_build_context_with_our_files(tmp_path):
    proc = subprocess.run([str(BUILDER), "create", "-f", str(REPO / "execution-environment.yml"), "-c",
                           str(tmp_path / "context")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = tmp_path / "context" / "_build"
    assert (build / "requirements.txt").read_text() == (REPO / "requirements.txt").read_text()
    assert (build / "bindep.txt").read_text() == (REPO / "bindep.txt").read_text()
    assert (build / "requirements.yml").read_text() == (REPO / "collections" / "requirements.yml").read_text()
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert "RUN dnf install -y epel-release" in containerfile  # DCMTK on EL9 comes from EPEL
    refs = re.search(r'ARG ANSIBLE_INSTALL_REFS="([^"]+)"', containerfile).group(1).split()
    # The EE runs the ansible-core and ansible-runner the project is tested with.
    assert refs == [f"ansible-core=={metadata.version('ansible-core')}",
                    f"ansible-runner=={metadata.version('ansible-runner')}"]
    assert "ansible-galaxy collection install" in containerfile and "-r requirements.yml" in containerfile


def test_the_ees_python_requirements_are_the_projects_runtime_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = {Requirement(r).name: str(Requirement(r).specifier) for r in project}
    listed = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            listed[requirement.name] = str(requirement.specifier)
    assert listed == {k: v for k, v in runtime.items() if k not in PINNED_BY_THE_EE}


def test_bindep_reads_the_system_packages_for_both_families_and_this_debian_has_them():
    depends = Depends((REPO / "bindep.txt").read_text())
    for platform, wanted in (("platform:rpm", {"dcmtk", "openssh-clients"}),
                             ("platform:dpkg", {"dcmtk", "openssh-client"})):
        assert {rule[0] for rule in depends.active_rules([platform])} == wanted
    # On this Debian controller, bindep's own check finds nothing missing (what the EE's assemble runs).
    debian = depends.active_rules(depends.platform_profiles())
    assert not depends.check_rules(debian), depends.check_rules(debian)


def test_awx_finds_the_collections_where_it_looks_and_the_top_level_file_is_the_same():
    awx = REPO / "collections" / "requirements.yml"
    top = REPO / "requirements.yml"
    assert top.resolve() == awx.resolve()
    names = [c["name"] for c in yaml.safe_load(awx.read_text())["collections"]]
    assert {"community.vmware", "community.proxmox", "containers.podman", "ansible.windows"} <= set(names)
    execution = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert execution["dependencies"]["galaxy"] == "collections/requirements.yml"
