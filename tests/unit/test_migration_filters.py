"""filter_plugins/migration.py: the cutover list, the migration report and its text."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))
import migration  # noqa: E402

OLD = {"name": "pacs1", "host": "10.0.0.5", "calling_aet": "CUVERIFY", "pacs": {"aet": "PACS1", "dicom_port": 104}}
NEW = {"name": "pacs2", "host": "10.0.0.6", "calling_aet": "CUVERIFY", "pacs": {"aet": "PACS2", "dicom_port": 4242}}
MODALITIES = {
    "ct1": {"AET": "CT1", "Host": "10.0.1.1", "Port": 104},
    "cu-verify": {"AET": "CUVERIFY", "Host": "127.0.0.1", "Port": 11112},
}


def test_the_cutover_names_modalities_workstations_and_the_ris_but_not_the_controller():
    workstations = [
        {"name": "ws1", "pacs_aet": "PACS1", "pacs_host": "10.0.0.5", "product": "linux"},
        {"name": "ws2", "pacs_aet": "OTHER", "pacs_host": "10.0.0.9", "product": "linux"},
        {"name": "win1", "pacs_aet": "", "pacs_host": "pacs1", "product": "windows"},
    ]
    items = migration.migration_cutover(MODALITIES, OLD, NEW, workstations, ["ris1"])
    assert [(i["kind"], i["name"]) for i in items] == [
        ("modality", "ct1"), ("workstation", "ws1"), ("workstation", "win1"), ("ris", "ris1")]
    assert items[0]["now"] == "PACS1@10.0.0.5:104" and items[0]["then"] == "PACS2@10.0.0.6:4242"
    assert items[0]["device"] == "CT1@10.0.1.1:104"
    assert "workstation_windows_pacs_host" in items[2]["how"]


def test_the_workstations_are_read_from_their_inventory_variables():
    hostvars = {"ws1": {"workstation_linux_pacs_aet": "PACS1", "workstation_linux_pacs_host": "10.0.0.5"}, "ws2": {}}
    assert migration.migration_workstations(["ws1", "ws2"], hostvars, "linux") == [
        {"name": "ws1", "pacs_aet": "PACS1", "pacs_host": "10.0.0.5", "product": "linux"},
        {"name": "ws2", "pacs_aet": "", "pacs_host": "", "product": "linux"},
    ]


def parts(**over):
    base = {
        "run": "20261203T180000Z", "stage": "full", "source": {"name": "pacs1", "version": "1.10.1", "instances": 10,
                                                               "studies": 2},
        "target": {"name": "pacs2", "version": "1.12.7"},
        "bulk": {"to_copy": 10, "copied": 10, "bytes": 5000, "elapsed_s": 2.0, "failures": []},
        "delta": {"to_copy": 1, "copied": 1, "bytes": 500, "elapsed_s": 0.5, "failures": []},
        "heal": {"skipped": True},
        "gate": {"method": "rest", "passed": True, "discrepancy_rate": 0.0, "max_discrepancy_percent": 1.0,
                 "discrepancies": {"missing_instances": 0}, "missing": [], "deep_check": {"instances_compared": 11}},
        "failures": [],
        "cutover": [],
    }  # fmt: skip
    base.update(over)
    return base


def test_the_report_adds_up_both_passes_and_passes_with_the_gate():
    report = migration.migration_summary(parts())
    assert report["passed"] is True
    assert report["copy"]["instances"] == 11 and report["copy"]["bytes"] == 5500
    assert report["copy"]["instances_per_second"] == 4.4
    assert report["copy"]["heal"] is None
    assert report["reconciliation"]["passed"] is True


def test_a_failed_gate_a_copy_failure_or_a_gate_without_result_fails_the_report():
    assert not migration.migration_summary(parts(gate={"passed": False, "discrepancy_rate": 5.0}))["passed"]
    failure = {"orthanc_id": "x", "sop_instance_uid": "2.25.1", "reason": "refused"}
    assert not migration.migration_summary(parts(failures=[failure]))["passed"]
    broken = migration.migration_summary(parts(gate={"failed": True, "msg": "connection refused"}))
    assert not broken["passed"] and broken["reconciliation"]["error"] == "connection refused"


def test_the_copy_stage_has_no_gate_and_passes_when_everything_was_copied():
    report = migration.migration_summary(parts(stage="copy", gate={"skipped": True}, delta={"skipped": True}))
    assert report["passed"] and report["reconciliation"] == {"skipped": True} and report["copy"]["delta"] is None
    assert "not yet (the copy stage)" in migration.migration_text(report)


def test_the_text_names_the_outcome_every_discrepancy_and_the_cutover():
    gate = dict(parts()["gate"], passed=False, discrepancy_rate=10.0,
                missing=[{"sop_instance_uid": "2.25.7", "study_instance_uid": "2.25.1"}])  # fmt: skip
    cutover = migration.migration_cutover(MODALITIES, OLD, NEW)
    text = migration.migration_text(migration.migration_summary(parts(gate=gate, cutover=cutover)))
    assert text.startswith("Migration pacs1 -> pacs2 (full): FAILED")
    assert "missing: 2.25.7 (study 2.25.1)" in text
    assert "modality ct1 (CT1@10.0.1.1:104): PACS1@10.0.0.5:104 -> PACS2@10.0.0.6:4242" in text
