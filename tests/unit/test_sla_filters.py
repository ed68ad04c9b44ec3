"""filter_plugins/sla.py: each finding's SLA severity and its response and resolution targets."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))

from sla import sla_findings, sla_table, sla_worst, upgrade_findings  # noqa: E402
from upgrade import upgrade_result_new  # noqa: E402


def record(check, status="passed", elapsed_ms=None, message="ok"):
    return {"check": check, "status": status, "elapsed_ms": elapsed_ms, "message": message, "details": {}}


@pytest.mark.parametrize("check", ["dicom_echo", "dicom_query_studies", "host_reachable", "instances_preserved"])
def test_a_pacs_that_does_not_answer_or_lost_images_is_severity_1(check):
    findings = sla_findings([record(check, "failed", message="refused")], "pacs1", "pacs")
    assert [(f["severity"], f["host"], f["check"]) for f in findings] == [(1, "pacs1", check)]
    assert findings[0]["response_minutes"] == 15 and findings[0]["resolution_hours"] == 2


@pytest.mark.parametrize("check", ["hl7_order_ack", "worklist_echo"])
def test_a_ris_that_does_not_acknowledge_orders_or_serve_its_worklist_is_severity_1(check):
    assert sla_worst(sla_findings([record(check, "failed")], "ris1", "ris")) == 1


@pytest.mark.parametrize("check", ["dicom_roundtrip", "order_in_worklist", "workflow", "canary_instances",
                                   "counts_not_lower", "version_is_expected", "a_check_added_later"])
def test_a_degraded_workflow_is_severity_2(check):
    assert sla_worst(sla_findings([record(check, "failed")], "pacs1", "pacs")) == 2


def test_a_workstation_failing_even_its_echo_is_severity_3():
    findings = sla_findings([record("pacs_echo_from_workstation", "failed"), record("image_load", "failed")],
                            "ws1", "workstation")
    assert {f["severity"] for f in findings} == {3}
    assert len(findings) == 2


def test_latency_far_above_the_baseline_is_severity_2_and_small_or_near_latencies_are_not():
    baseline = {"dicom_echo": 40}
    assert sla_findings([record("dicom_echo", elapsed_ms=150)], "p", "pacs", baseline=baseline) == []  # < 1 s
    slow = sla_findings([record("dicom_echo", elapsed_ms=1500)], "p", "pacs", baseline=baseline)
    assert [(f["severity"], f["title"]) for f in slow] == [(2, "verification latency far above its baseline")]
    assert "1500 ms against 40 ms" in slow[0]["message"]
    near = sla_findings([record("dicom_echo", elapsed_ms=1500)], "p", "pacs", baseline={"dicom_echo": 900})
    assert near == []


def test_passed_and_skipped_checks_are_no_finding():
    assert sla_findings([record("dicom_echo"), record("dicom_roundtrip", "skipped")], "p", "pacs") == []
    assert sla_worst([]) is None


def test_out_of_hours_targets_and_the_sites_own_table():
    findings = sla_findings([record("dicom_echo", "failed")], "p", "pacs", in_service_hours=False)
    assert (findings[0]["response_minutes"], findings[0]["resolution_hours"]) == (30, 4)
    site = {1: {"in_service_hours": {"response_minutes": 10}}, "2": {"name": "workflow broken"}}
    table = sla_table(site)
    assert table[1]["in_service_hours"] == {"response_minutes": 10, "resolution_hours": 2}
    assert table[2]["name"] == "workflow broken"
    assert sla_findings([record("dicom_echo", "failed")], "p", "pacs", sla=site)[0]["response_minutes"] == 10


@pytest.mark.parametrize("site, words", [
    ({5: {}}, "1, 2, 3 or 4"),
    ({1: {"in_service_hours": {"response_minutes": -1}}}, "positive number"),
    ({1: {"in_service_hours": {"respond": 5}}}, "use response_minutes or resolution_hours"),
    ({1: {"colour": "red"}}, "use name, in_service_hours or out_of_hours"),
    ([1, 2], "must be a mapping"),
])
def test_a_wrong_site_table_says_what_to_fix(site, words):
    with pytest.raises(ValueError, match=words):
        sla_table(site)


def result(outcome, product="pacs", **keys):
    out = upgrade_result_new("pacs1" if product != "workstation_linux" else "ws1", product, {"id": "r"}, "1.12.7")
    out.update(outcome=outcome, **keys)
    return out


def test_a_rollback_that_did_not_complete_is_severity_1_with_what_the_rollback_verification_found():
    findings = upgrade_findings(result("rollback_failed", failed_step="switch: start", message="no start",
                                       rollback_verification=[record("dicom_echo", "failed")],
                                       downtime={"measured": True}))
    assert [(f["severity"], f["check"], f["source"]) for f in findings] == [
        (1, "dicom_echo", "rollback_verification"), (1, "outcome", "upgrade")]
    assert "switch: start - no start" in findings[1]["message"]


def test_a_clean_rollback_is_severity_3_and_the_failed_verification_of_the_new_version_is_not_an_incident():
    findings = upgrade_findings(result("rolled_back", verification=[record("dicom_roundtrip", "failed")],
                                       rollback_verification=[record("dicom_echo")], downtime={"measured": True}))
    assert [(f["severity"], f["check"]) for f in findings] == [(3, "outcome")]


def test_an_upgrade_verified_with_a_slow_echo_and_no_downtime_measurement():
    findings = upgrade_findings(result("upgraded", baseline={"echo_ms": 20},
                                       verification=[record("dicom_echo", elapsed_ms=2500)],
                                       downtime={"measured": False, "reason": "the probe did not start"}))
    assert [(f["severity"], f["check"]) for f in findings] == [(2, "dicom_echo"), (4, "downtime")]


def test_a_refused_upgrade_is_severity_4_per_failed_precheck():
    findings = upgrade_findings(result("refused", precheck=[
        {"id": "PRE-004", "title": "disk", "status": "failed", "message": "2 GiB free, 6 GiB needed"},
        {"id": "PRE-001", "title": "ssh", "status": "passed", "message": ""}]))
    assert [(f["severity"], f["check"]) for f in findings] == [(4, "PRE-004"), (4, "outcome")]


def test_a_workstation_whose_rollback_failed_is_still_a_limited_impact():
    findings = upgrade_findings(result("rollback_failed", product="workstation_linux",
                                       rollback_verification=[record("image_load", "failed")],
                                       downtime={"measured": True}))
    assert {f["severity"] for f in findings} == {3}


def test_an_upgraded_host_with_every_check_passed_has_no_finding():
    assert upgrade_findings(result("upgraded", verification=[record("dicom_echo", elapsed_ms=20)],
                                   downtime={"measured": True})) == []
    with pytest.raises(ValueError, match="needs an upgrade result"):
        upgrade_findings({"host": "x"})
