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

    def delete(self, path: str) -> None:
        """DELETE a resource (the scenarios that inject discrepancies on purpose)."""
        req = urllib.request.Request(self.url + path, method="DELETE")  # noqa: S310
        req.add_header("Authorization", self._auth)
        with urllib.request.urlopen(req, timeout=30):  # noqa: S310 - loopback lab peer
            pass

    def instance_by_sop_uid(self, sop_uid: str) -> str | None:
        found = self.json("/tools/lookup", sop_uid.encode())
        ids = [f["ID"] for f in found if f.get("Type") == "Instance"]
        return ids[0] if ids else None


def altered_copy(data: bytes) -> bytes:
    """A DICOM file with the same UIDs and other content (its series description changed)."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SeriesDescription = "ALTERED AFTER THE MIGRATION"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


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


# --------------------------------------------------------------------------- the RIS scenarios

RIS_ORDERS_CMD = "/opt/cu-ris/current/bin/ris-orders --db /var/lib/ris/orders.sqlite list"
# Order columns an upgrade must keep as they were (schema 2 adds revision, updated_at).
ORDER_IDENTITY = ("accession", "patient_id", "patient_name", "modality", "station_aet", "scheduled", "procedure",
                  "study_uid", "status", "message", "received_at", "control_id")


def ris_schema(host) -> dict:
    """The order database's schema as the running release's ris-migrate --status reports it (read-only)."""
    return json.loads(host.check_output("/opt/cu-ris/current/bin/ris-migrate --db /var/lib/ris/orders.sqlite --status"))


def ris_orders(host) -> dict[str, dict]:
    """The RIS's orders by accession number, as the release's own ris-orders lists them (on the host)."""
    return {row["accession"]: row for row in json.loads(host.check_output(RIS_ORDERS_CMD))}


def orders_before(inventory_name: str) -> dict[str, dict]:
    """The orders prepare_ris.yml recorded before the scenario's runs."""
    rows = json.loads((EPHEMERAL / f"orders-before.json-{inventory_name}").read_text())
    return {row["accession"]: row for row in rows}


def orders_acknowledged(name: str = "orders-sent.jsonl") -> list[dict]:
    """What the scenario's ordering system (tools/order_sender.py) sent and the RIS acknowledged AA."""
    sys.path.insert(0, str(PROJECT / "tools"))
    from order_sender import acknowledged

    return acknowledged(EPHEMERAL / name)


def orders_unavailability() -> dict:
    """When the RIS's HL7 interface did not acknowledge the ordering system (order_sender.unavailability)."""
    sys.path.insert(0, str(PROJECT / "tools"))
    from order_sender import records, unavailability

    return unavailability(records(EPHEMERAL / "orders-sent.jsonl"), 0.2)


def hl7_client():
    """The project's HL7 client (plugins/module_utils/hl7_client.py), as tools/order_sender.py imports it."""
    sys.path.insert(0, str(PROJECT / "tools"))
    import order_sender

    return order_sender.hl7_client


def findscu_worklist(port: int, called_ae: str = "RISWL") -> list:
    """The modality worklist as DCMTK's findscu (an implementation independent of the project) reads
    it: one pydicom dataset per item, with AccessionNumber, PatientID and the step's Modality."""
    import tempfile

    import pydicom

    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["/usr/bin/findscu", "-W", "-aet", "CUVERIFY", "-aec", called_ae, "-X", "-od", out,
                        "-k", "AccessionNumber", "-k", "PatientID", "-k", "ScheduledProcedureStepSequence[0].Modality",
                        "127.0.0.1", str(port)], check=True, capture_output=True, timeout=120)
        return [pydicom.dcmread(p) for p in sorted(Path(out).glob("rsp*.dcm"))]


def install_tree(host) -> str:
    """The installed releases' paths, file digests and current link (as prepare_ris.yml records them)."""
    return host.check_output("cd /opt/cu-ris && find . -print | sort && find . -type f -print0 "
                             "| sort -z | xargs -0 sha256sum && readlink current")


def _png_pixels_vary(png: bytes) -> bool:
    """True when a PNG (8-bit RGB or RGBA, as Chromium writes) has more than one colour in it."""
    import struct
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, channels = 8, b"", 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, _height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), f"unexpected PNG format (depth {depth}, colour {colour})"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * channels
    # Filter bytes aside, a blank page's rows are all the same after the first (filter "up" gives zeros).
    rows = {raw[i + 1:i + stride] for i in range(0, len(raw), stride)}
    return len(rows) > 2


def render_in_chromium(html: Path, screenshot: Path) -> str:
    """Render a page in headless Chromium (Debian's chromium): save a screenshot, return the DOM as rendered."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    flags = ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1400,1800"]
    subprocess.run([*flags, f"--screenshot={screenshot}", html.as_uri()], check=True, capture_output=True, timeout=120)
    assert _png_pixels_vary(screenshot.read_bytes()), f"{screenshot} is blank"
    dom = subprocess.run([*flags, "--dump-dom", html.as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    return dom
