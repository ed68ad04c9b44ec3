"""The project's own health checks (playbooks/verify.yml) against the converged scenario."""

import json
import re

EXPECTED = {
    "mol-pacs1": {"dicom_echo", "pacs_info", "dicom_query_studies", "dicom_roundtrip"},
    "mol-ris1": {"worklist_echo", "hl7_order_ack", "order_in_worklist", "hl7_cancel_ack", "cancelled_order_gone",
                 "workflow"},
    "mol-lab-ws1": {"pacs_echo_from_workstation", "image_load", "viewer_version", "held_packages"},
    "mol-lab-ws2": {"pacs_echo_from_workstation", "image_load", "viewer_version", "held_packages"},
}


def test_verify_playbook_succeeds(verify_result):
    assert verify_result["_returncode"] == 0, verify_result["_stdout"][-4000:]


def test_every_expected_check_ran_and_passed(verify_result):
    by_host = {}
    for check in verify_result["checks"]:
        by_host.setdefault(check["host"], {})[check["check"]] = check
    for host, checks in EXPECTED.items():
        assert set(by_host.get(host, {})) == checks, f"{host}: ran {sorted(by_host.get(host, {}))}"
        failed = {name: c["message"] for name, c in by_host[host].items() if c["status"] != "passed"}
        assert not failed, f"{host}: {failed}"
    assert verify_result["summary"]["failed"] == 0
    assert verify_result["summary"]["passed"] == sum(len(c) for c in EXPECTED.values())


def test_pacs_reports_seeded_content_and_version(verify_result):
    pacs = {c["check"]: c for c in verify_result["checks"] if c["host"] == "mol-pacs1"}
    info = pacs["pacs_info"]["details"]
    assert info["version"].startswith("1.10")
    assert info["statistics"]["studies"] == 20
    assert info["statistics"]["instances"] == 600
    assert pacs["dicom_query_studies"]["details"]["count"] == 20
    assert pacs["dicom_roundtrip"]["details"]["match"] is True
    assert pacs["dicom_roundtrip"]["details"]["deleted"] is True


def test_the_workflow_crossed_ris_and_pacs(verify_result):
    """The RIS's order reached the PACS as a study with the worklist's identity, and left nothing behind."""
    ris = {c["check"]: c for c in verify_result["checks"] if c["host"] == "mol-ris1"}
    details = ris["workflow"]["details"]
    assert details["matched"] is True and details["deleted"] is True and details["cancelled"] is True
    assert {name: step["status"] for name, step in details["steps"].items() if step["status"] != "skipped"} == {
        "order": "ok", "worklist": "ok", "store": "ok", "pacs_find": "ok", "cleanup_study": "ok", "cancel": "ok",
        "worklist_gone": "ok",
    }


def test_result_carries_no_patient_names_or_ids(verify_result):
    text = json.dumps({k: v for k, v in verify_result.items() if not k.startswith("_")})
    assert "SYNTH^PATIENT" not in text
    assert not re.search(r"SYN-?\d{4,}", text), "an unmasked synthetic patient ID is in the result"


def test_run_record_says_who_and_when(verify_result):
    run = verify_result["run"]
    assert run["started"].endswith("Z") and run["finished"].endswith("Z")
    assert run["user"]
    assert sorted(run["hosts"]) == sorted(EXPECTED)
