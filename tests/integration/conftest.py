# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Fixtures for the snapshot role's integration tests.

* ``snaptest_container`` -- a systemd container ``cu-snaptest-<random>`` made from
  ``localhost/cu-debian12:latest`` (removed afterwards, with its volumes and snapshot images).
* ``run_playbook`` -- runs ``ansible-playbook`` from the repository with a throw-away inventory and
  registry, returns (completed process, facts written by the playbook).

Podman is always called with ``CONTAINERS_CONF`` = the project's ``lab/containers.conf``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from support import free_port

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
CONTAINERS_CONF = REPO / "lab" / "containers.conf"
BASE_IMAGE = "localhost/cu-debian12:latest"
VENV_BIN = REPO / ".venv" / "bin"
ENV = {
    **os.environ,
    "CONTAINERS_CONF": str(CONTAINERS_CONF),
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "ANSIBLE_FORCE_COLOR": "0",
    "ANSIBLE_NOCOLOR": "1",
    "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
}


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, check=check, timeout=300)


def inspect(name: str) -> dict:
    return json.loads(podman("container", "inspect", name).stdout)[0]


def pexec(name: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    return podman("exec", name, "bash", "-c", script, check=check)


@dataclass
class Container:
    name: str
    port: int
    volume: str
    labels: dict = field(default_factory=dict)


@pytest.fixture
def snaptest_container():
    suffix = secrets.token_hex(3)
    name = f"cu-snaptest-{suffix}"
    volume = f"cu-snaptest-{suffix}-vol"
    # A free port of the ephemeral range: the Molecule scenarios (make molecule, which may run beside
    # this suite) publish theirs below it (tests/unit/test_molecule_ports.py).
    port = free_port()
    labels = {"org.clinical-upgrade.snaptest": "true", "org.clinical-upgrade.host": "snaphost"}
    podman("volume", "create", volume)
    mountpoint = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip())
    links = mountpoint.parents[3] / "clinical-upgrade-links" / "snaptest-host"  # the link trees' default place
    args = ["run", "-d", "--name", name, "--systemd=always", "--hostname", "snaphost",
            "-p", f"127.0.0.1:{port}:8042", "-v", f"{volume}:/srv/vol"]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    podman(*args, BASE_IMAGE, "/sbin/init")
    try:
        deadline = time.monotonic() + 90
        while True:
            state = podman("exec", name, "systemctl", "is-system-running", "--wait", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: systemd did not boot ({state})")
            time.sleep(1)
        yield Container(name=name, port=port, volume=volume, labels=labels)
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("volume", "rm", "-f", volume, check=False)
        shutil.rmtree(links, ignore_errors=True)
        images = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
                        "reference=localhost/cu-snapshot/*", check=False).stdout.split()
        for image in images:
            if image.startswith("localhost/cu-snapshot/snaptest-"):
                podman("rmi", "-f", image, check=False)


@pytest.fixture
def run_playbook(tmp_path):
    """run_playbook(playbook, host_vars, extra_vars=None, host='snaptest-...', check=False)."""
    registry = tmp_path / "registry"

    def run(playbook: str, host_vars: dict, extra_vars: dict | None = None, host: str = "snaptest-host",
            check_mode: bool = False, verbosity: int = 0):
        inventory = tmp_path / "inventory.yml"
        hv = {"snapshot_registry_dir": str(registry), **host_vars}
        localhost = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        inventory.write_text(yaml.safe_dump({"all": {"children": {"snaptest": {"hosts": {host: hv}}},
                                                     "hosts": {"localhost": localhost}}}))
        out = tmp_path / f"out-{secrets.token_hex(4)}.json"
        extra = {"snaptest_out": str(out), **(extra_vars or {})}
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOKS / playbook),
               "-e", json.dumps(extra)]
        if check_mode:
            cmd.append("--check")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
        facts = json.loads(out.read_text()) if out.exists() else None
        return proc, facts

    run.registry = registry
    return run


def container_host_vars(container: Container, **extra) -> dict:
    return {
        "ansible_connection": "lab_podman",
        "ansible_host": container.name,
        "ansible_python_interpreter": "/usr/bin/python3",
        **extra,
    }
