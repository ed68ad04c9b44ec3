"""playbooks/verify.yml against a secured PACS: DICOM TLS with a client certificate, and an
https REST API signed by a site CA that no system trust store knows (the ``tls_orthanc`` peer).

Everything reaches the modules through the inventory's endpoint variables only
(``endpoint_dicom_tls*``, ``endpoint_rest_url``, ``endpoint_rest_ca_path``, docs/inventory.md).
Also ``--check``: the health check runs, changes nothing, and still writes its evidence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def inventory(tmp_path: Path, peer, pki, **overrides) -> Path:
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "endpoint_host": peer.host,
        "endpoint_dicom_port": peer.dicom_port,
        "pacs_server_dicom_aet": peer.aet,
        "verify_calling_aet": peer.scu_ae,
        "endpoint_dicom_tls": True,
        "endpoint_dicom_tls_ca_cert": str(pki.ca_cert),
        "endpoint_dicom_tls_client_cert": str(pki.client_cert),
        "endpoint_dicom_tls_client_key": str(pki.client_key),
        "endpoint_rest_url": peer.url,
        "endpoint_rest_ca_path": str(pki.ca_cert),
        "pacs_server_rest_user": peer.user,
        "pacs_server_rest_password": peer.password,
    }
    host.update(overrides)
    data = {
        "all": {
            "vars": {"clinical_upgrade_evidence_dir": str(tmp_path / "evidence")},
            "children": {"pacs": {"hosts": {"securepacs": host}}},
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def verify(inv: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inv), str(REPO / "playbooks" / "verify.yml"), *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "evidence" / "verify-latest.json").read_text())


def checks(rep: dict) -> dict:
    return {c["check"]: c for c in rep["checks"]}


def test_verify_passes_against_a_secured_pacs(tmp_path, tls_orthanc, tls_pki):
    before = tls_orthanc.rest("GET", "/statistics")["CountInstances"]
    result = verify(inventory(tmp_path, tls_orthanc, tls_pki))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    by_check = checks(report(tmp_path))
    assert {name: c["status"] for name, c in by_check.items()} == {
        "dicom_echo": "passed", "pacs_info": "passed", "dicom_query_studies": "passed", "dicom_roundtrip": "passed",
    }
    assert by_check["dicom_echo"]["details"].get("tls") is True
    assert tls_orthanc.rest("GET", "/statistics")["CountInstances"] == before  # the round trip cleaned up


def test_verify_names_the_inventory_variable_when_the_site_ca_is_missing(tmp_path, tls_orthanc, tls_pki):
    result = verify(inventory(tmp_path, tls_orthanc, tls_pki, endpoint_rest_ca_path=""))
    assert result.returncode != 0
    by_check = checks(report(tmp_path))
    assert by_check["pacs_info"]["status"] == "failed"
    assert "set ca_path (inventory: endpoint_rest_ca_path) to the site CA" in by_check["pacs_info"]["message"]
    assert by_check["dicom_echo"]["status"] == "passed"  # DICOM TLS has its own CA
    # the round trip's synthetic instance could not be deleted: a failure, and it is removed here
    assert by_check["dicom_roundtrip"]["status"] == "failed"
    uid = by_check["dicom_roundtrip"]["details"]["sop_instance_uid"]
    for item in tls_orthanc.rest("POST", "/tools/lookup", uid) or []:
        tls_orthanc.rest("DELETE", f"/instances/{item['ID']}")


def test_verify_in_check_mode_writes_evidence_and_stores_nothing(tmp_path, tls_orthanc, tls_pki):
    before = tls_orthanc.rest("GET", "/changes?last")["Last"]
    result = verify(inventory(tmp_path, tls_orthanc, tls_pki), "--check")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    rep = report(tmp_path)
    assert rep["run"]["check_mode"] is True
    assert checks(rep)["dicom_echo"]["status"] == "passed"
    assert tls_orthanc.rest("GET", "/changes?last")["Last"] == before  # nothing stored, nothing deleted
