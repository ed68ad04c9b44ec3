"""Helpers shared by the Molecule scenarios' testinfra tests.

Each scenario's tests/conftest.py puts molecule/resources on sys.path and imports from here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[2]))
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
RESULTS = EPHEMERAL / "results"
SEED_DIR = PROJECT / "lab" / "state" / "seed" / "20x3x10-64px"
# The lab's synthetic REST credential, read from where the inventory keeps it.
LAB_PASSWORD = yaml.safe_load((PROJECT / "inventories/lab/group_vars/all/vault.yml").read_text())[
    "pacs_server_rest_password"]

sys.path.insert(0, str(PROJECT / "plugins" / "module_utils"))


def venv_bin(tool: str) -> str:
    """Path of a tool in the project's virtualenv (where molecule runs from)."""
    return str(Path(os.environ.get("VIRTUAL_ENV", PROJECT / ".venv")) / "bin" / tool)


def run_playbook(playbook: str, *extra: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run one of the project's playbooks against the scenario's inventory."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
    return subprocess.run(
        [venv_bin("ansible-playbook"), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         str(PROJECT / "playbooks" / playbook), *extra],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def run_verify_playbook(result_dir: Path) -> dict:
    """Run playbooks/verify.yml; return its JSON result with the return code and output added."""
    proc = run_playbook("verify.yml", "-e", f"dicom_verify_result_dir={result_dir}")
    latest = result_dir / "verify-latest.json"
    assert latest.exists(), f"verify.yml wrote no result file:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    result = json.loads(latest.read_text())
    result["_returncode"] = proc.returncode
    result["_stdout"] = proc.stdout
    return result


class OrthancRest:
    """Read-only REST access to a scenario's Orthanc from the controller."""

    def __init__(self, url: str, user: str = "cuadmin", password: str = LAB_PASSWORD):
        self.url = url.rstrip("/")
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def request(self, path: str, body: bytes | None = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None else "GET")  # noqa: S310
        req.add_header("Authorization", self._auth)
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback lab peer
            return resp.read()

    def json(self, path: str, body: bytes | None = None):
        return json.loads(self.request(path, body))

    def instance_by_sop_uid(self, sop_uid: str) -> str | None:
        found = self.json("/tools/lookup", sop_uid.encode())
        ids = [f["ID"] for f in found if f.get("Type") == "Instance"]
        return ids[0] if ids else None


def seed_manifest() -> dict:
    return json.loads((SEED_DIR / "manifest.json").read_text())


def dataset_digest_of_bytes(data: bytes) -> str:
    """sha256 of a DICOM file's dataset without file meta (dicom_synth.dataset_digest)."""
    import io

    import pydicom
    from dicom_synth import dataset_digest

    return dataset_digest(pydicom.dcmread(io.BytesIO(data)))


def seed_digest(entry: dict) -> str:
    return dataset_digest_of_bytes((SEED_DIR / entry["path"]).read_bytes())


def storage_hashes(text: str) -> dict[str, str]:
    """Parse `sha256sum` output of Orthanc's storage into {path: sha256}, DICOM attachments only."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        digest, path = line.split(maxsplit=1)
        parts = path.lstrip("./").split("/")
        # Orthanc stores attachments as <storage>/<2 hex>/<2 hex>/<uuid>; the SQLite index lives beside them.
        if len(parts) == 4 and len(parts[1]) == 2 and len(parts[2]) == 2:
            out[path] = digest
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def evidence_files(host: str) -> list[dict]:
    """Every upgrade evidence file written for `host` in this scenario, oldest first."""
    files = sorted(RESULTS.glob(f"upgrade-*/{host}.json"))
    return [json.loads(p.read_text()) for p in files]


def seed_instances_problems(rest: OrthancRest) -> tuple[list[str], list[str]]:
    """(missing, different): seeded SOP Instance UIDs the PACS lacks, or holds with another dataset."""
    missing, different = [], []
    for sop_uid, entry in seed_manifest().items():
        instance = rest.instance_by_sop_uid(sop_uid)
        if instance is None:
            missing.append(sop_uid)
        elif dataset_digest_of_bytes(rest.request(f"/instances/{instance}/file")) != seed_digest(entry):
            different.append(sop_uid)
    return missing, different


def acknowledged_by_sender() -> list[dict]:
    """What the scenario's modality (tools/modality_sender.py) sent and the PACS acknowledged."""
    sys.path.insert(0, str(PROJECT / "tools"))
    from modality_sender import acknowledged

    return acknowledged(EPHEMERAL / "sent.jsonl")


def acknowledged_but_missing(rest: OrthancRest) -> tuple[int, list[str]]:
    """(how many stores the PACS acknowledged, the SOP Instance UIDs of those it no longer holds)."""
    acks = acknowledged_by_sender()
    return len(acks), [a["sop_instance_uid"] for a in acks if rest.instance_by_sop_uid(a["sop_instance_uid"]) is None]


STORAGE_HASH_CMD = "cd /var/lib/orthanc && find . -type f -print0 | sort -z | xargs -0 sha256sum"


def storage_changes(host, inventory_name: str) -> tuple[int, list[str]]:
    """(files recorded before, stored DICOM files since changed or gone), against prepare's record."""
    before = storage_hashes((EPHEMERAL / f"storage-before-{inventory_name}.sha256").read_text())
    after = storage_hashes(host.check_output(STORAGE_HASH_CMD))
    return len(before), [p for p, digest in before.items() if after.get(p) != digest]
