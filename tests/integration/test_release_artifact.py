"""roles/release_artifact (the artifact install method) on localhost, with archives the test builds.

The archives stand for a vendor's releases; the role is generic, so the test builds small ones of its
own (a bin/ script that a migration command runs) instead of depending on one product. Every run is
ansible-playbook with the project's configuration against a fresh install directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from support import run_playbook_with_vars

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "release_artifact.yml"


def build_archive(path: Path, version: str, extra: list[tarfile.TarInfo] | None = None, top: str | None = None):
    top = top or f"demo-{version}"
    files = {
        f"{top}/release.json": json.dumps({"product": "demo", "version": version}).encode(),
        f"{top}/bin/migrate": b"#!/bin/sh\necho \"migrate $1 $2\" >> \"$3\"\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_state(root: Path) -> dict:
    """Every path under root with its kind and content (or link target): byte-for-byte comparison."""
    state = {}
    if not root.exists():
        return state
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_file():
            state[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            state[rel] = ("dir",)
    return state


class Site:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.store = tmp_path / "store"
        self.store.mkdir()
        self.install = tmp_path / "opt" / "demo"
        self.log = tmp_path / "commands.log"
        self.catalogue: dict = {"demo": {}}

    def release(self, version, *, sha256=None, name=None, migration="bin/migrate {previous_version} {version} LOG",
                upgrade_from=(), extra=None, top=None):
        name = name or f"demo-{version}.tar.gz"
        digest = build_archive(self.store / Path(name).name, version, extra, top)
        self.catalogue["demo"][version] = {
            "install_method": "artifact",
            "artifacts": [{"name": name, "sha256": digest if sha256 is None else sha256}],
            "os": {"family": "Debian", "major_versions": ["12"]},
            "upgrade_from": list(upgrade_from),
            "min_free_disk_mb": 1,
            "min_memory_mb": 1,
            "database_migration": "command",
            "migration_command": migration.replace("LOG", str(self.log)),
            "pre_commands": [f"sh -c 'echo pre {{version}} from {{previous_dir}} >> {self.log}'"],
            "post_commands": [f"sh -c 'echo post {{release_dir}} >> {self.log}'"],
        }

    def run(self, action: str, version: str, **extra) -> tuple[subprocess.CompletedProcess, dict]:
        inventory = self.tmp / "hosts.yml"
        inventory.write_text(yaml.safe_dump({"all": {"hosts": {"rahost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
        out = self.tmp / "out.json"
        variables = {
            "ra_action": action, "ra_out": str(out), "release_catalogue": self.catalogue,
            "release_artifact_product": "demo", "release_artifact_version": version,
            "release_artifact_store": str(self.store), "release_artifact_install_dir": str(self.install),
            "release_artifact_owner": "root", "release_artifact_group": "root", **extra,
        }
        return run_playbook_with_vars(inventory, PLAYBOOK, variables, self.tmp / "vars.json", out, timeout=300)


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path)


def test_install_upgrade_and_idempotence(site):
    site.release("1.0", migration="bin/migrate none {version} LOG")
    site.release("1.1", upgrade_from=["1.0"])
    proc, facts = site.run("main", "1.0")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert os.readlink(site.install / "current") == "releases/1.0"
    proc, facts = site.run("main", "1.1")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert os.readlink(site.install / "current") == "releases/1.1"
    assert facts["switched"]["previous_version"] == "1.0" and facts["switched"]["changed"] is True
    assert site.log.read_text().splitlines()[-3:] == [
        f"pre 1.1 from {site.install}/releases/1.0",
        "migrate 1.0 1.1",
        f"post {site.install}/releases/1.1",
    ]
    assert (site.install / "releases" / "1.0" / "release.json").exists()  # the previous release stays
    assert not list((site.install / "releases").glob(".*.partial*"))
    before = tree_state(site.install)
    proc, facts = site.run("main", "1.1")
    assert proc.returncode == 0 and facts["switched"]["changed"] is False and facts["staged"]["changed"] is False
    assert tree_state(site.install) == before


def test_a_tampered_archive_is_refused_and_nothing_changes(site):
    site.release("1.0", migration="bin/migrate none {version} LOG")
    assert site.run("main", "1.0")[0].returncode == 0
    site.release("1.1")
    archive = site.store / "demo-1.1.tar.gz"
    data = bytearray(archive.read_bytes())
    data[-40] ^= 0xFF  # one flipped byte
    archive.write_bytes(bytes(data))
    before = tree_state(site.install)
    proc, _ = site.run("stage", "1.1")
    assert proc.returncode != 0
    assert "it is corrupt or has been tampered with. Nothing was changed" in proc.stdout
    assert tree_state(site.install) == before


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"sha256": ""}, "artifacts[0].sha256: missing; add the archive's sha256"),
        ({"name": "../outside.tar.gz"}, "is not a plain file name"),
    ],
)
def test_bad_catalogue_entries_name_the_key(site, change, fragment):
    site.release("1.0", **change)
    proc, _ = site.run("stage", "1.0")
    assert proc.returncode != 0
    assert fragment in proc.stdout
    assert not site.install.exists()


def test_a_link_leaving_the_release_is_refused(site):
    link = tarfile.TarInfo("demo-1.0/lib/etc-shadow")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc/shadow"
    site.release("1.0", extra=[link])
    proc, _ = site.run("stage", "1.0")
    assert proc.returncode != 0
    escaping = "symbolic link 'demo-1.0/lib/etc-shadow' -> '../../../../etc/shadow' points outside the release"
    assert escaping in proc.stdout
    assert not site.install.exists()


def test_a_failing_migration_puts_current_back(site):
    site.release("1.0", migration="bin/migrate none {version} LOG")
    assert site.run("main", "1.0")[0].returncode == 0
    site.release("1.2", migration="sh -c 'echo schema too new >&2; exit 3'")
    proc, _ = site.run("main", "1.2")
    assert proc.returncode != 0
    assert "release_catalogue.demo['1.2'].migration_command" in proc.stdout
    assert "schema too new" in proc.stdout and "current points to 1.0 again" in proc.stdout
    assert os.readlink(site.install / "current") == "releases/1.0"


def test_cleanup_keeps_the_newest(site):
    for version in ("1.0", "1.1", "1.2", "1.3"):
        site.release(version, migration="bin/migrate x {version} LOG")
        assert site.run("main", version)[0].returncode == 0
    proc, facts = site.run("cleanup", "1.3", release_artifact_keep=2)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sorted(facts["removed"]) == ["1.0", "1.1"]
    assert sorted(p.name for p in (site.install / "releases").iterdir() if not p.name.startswith(".")) == ["1.2", "1.3"]
