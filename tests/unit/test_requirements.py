"""requirements.yml lists every collection the code calls, and nothing else, at the installed version."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
FQCN = re.compile(r"(?<![\w.])([a-z_]+)\.([a-z_]+)\.[a-z_]+(?=\s*:|\s*$|['\"])", re.MULTILINE)
SOURCES = ("roles", "playbooks", "molecule")


def used_collections() -> set[str]:
    used = set()
    for base in SOURCES:
        for path in (REPO / base).rglob("*.yml"):
            for namespace, name in FQCN.findall(path.read_text()):
                used.add(f"{namespace}.{name}")
    # The callbacks ansible.cfg enables are plugins of collections too.
    for line in (REPO / "ansible.cfg").read_text().splitlines():
        if line.strip().startswith("callbacks_enabled"):
            for plugin in line.split("=", 1)[1].split(","):
                used.add(".".join(plugin.strip().split(".")[:2]))
    return {c for c in used if c.split(".")[0] in {"community", "containers", "ansible", "awx", "infra", "kubernetes"}}


def listed() -> dict[str, str]:
    data = yaml.safe_load((REPO / "requirements.yml").read_text())
    return {item["name"]: item["version"] for item in data["collections"]}


def test_every_used_collection_is_listed_and_no_other():
    used = used_collections() - {"ansible.builtin"}
    assert {"community.vmware", "community.proxmox", "containers.podman"} <= used  # the scan works
    assert set(listed()) == used, f"used: {sorted(used)}, listed: {sorted(listed())}"


def test_pins_are_the_installed_versions():
    galaxy = str(Path(sys.executable).parent / "ansible-galaxy")
    out = subprocess.run([galaxy, "collection", "list", "--format", "yaml"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    installed = {}
    for collections in yaml.safe_load(out).values():
        for name, info in collections.items():
            installed.setdefault(name, info["version"])
    for name, version in listed().items():
        found = installed.get(name)
        assert found == version, f"{name}: requirements.yml pins {version}, installed {found}"
