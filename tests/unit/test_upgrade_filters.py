"""filter_plugins/upgrade.py: the one result per host, its steps, the run metadata and summary."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))

from upgrade import (  # noqa: E402
    FilterModule,
    failed_checks,
    git_revision,
    product_discovery,
    upgrade_public,
    upgrade_record_step,
    upgrade_result_new,
    upgrade_run_metadata,
    upgrade_run_summary,
    upgrade_running_step,
    upgrade_step_begin,
    upgrade_step_end,
    upgrade_summary_line,
    upgrade_summary_lines,
    upgrade_timing,
)

RUN = {"id": "20261201T000000Z-abcdef"}


def new():
    return upgrade_result_new("pacs1", "pacs", RUN, "1.12.7")


def test_a_new_result_has_every_key_the_evidence_documents():
    result = new()
    assert result["kind"] == "clinical-upgrade/upgrade" and result["schema"] == 2
    assert result["outcome"] == "unknown" and result["steps"] == []
    assert result["versions"]["target"] == "1.12.7"
    for key in ("snapshot", "snapshot_reverted", "timings", "precheck", "baseline", "maintenance", "staged",
                "switch", "verification", "rollback_verification", "failed_step", "message"):
        assert key in result
    assert result["run"] == RUN and result["run"] is not RUN


def test_steps_are_appended_with_start_end_duration_and_status():
    result = upgrade_step_begin(new(), "lock", 1000.0)
    assert upgrade_running_step(result) == "lock"
    result = upgrade_step_end(result, "passed", 1001.5, "lock taken", {"path": "/x"})
    result = upgrade_step_begin(result, "snapshot", 1002.0)
    result = upgrade_step_end(result, "failed", 1012.25, "commit failed")
    names = [(s["name"], s["status"], s["duration_s"]) for s in result["steps"]]
    assert names == [("lock", "passed", 1.5), ("snapshot", "failed", 10.25)]
    assert result["steps"][0]["started"] == "1970-01-01T00:16:40.00Z"
    assert result["steps"][0]["details"] == {"path": "/x"} and result["steps"][1]["message"] == "commit failed"
    assert upgrade_running_step(result) is None
    public = upgrade_public(result)
    assert all("_t0" not in s for s in public["steps"])
    json.dumps(public)


def test_the_input_is_not_changed_in_place():
    result = new()
    upgrade_step_begin(result, "lock", 1.0)
    assert result["steps"] == []


def test_end_without_a_running_step_appends_a_named_record_or_changes_nothing():
    result = upgrade_step_end(new(), "skipped", 5.0, name="remove_snapshot")
    assert result["steps"][0]["name"] == "remove_snapshot" and result["steps"][0]["status"] == "skipped"
    assert upgrade_step_end(new(), "passed", 5.0) == new()


@pytest.mark.parametrize("status", ["running", "ok", ""])
def test_a_step_cannot_end_with_an_unknown_status(status):
    with pytest.raises(ValueError, match="step status must be one of"):
        upgrade_step_end(upgrade_step_begin(new(), "x", 1), status, 2)


def test_not_a_result_is_refused():
    with pytest.raises(ValueError, match="not an upgrade result"):
        upgrade_step_begin({"outcome": "x"}, "lock", 1)


def test_step_results_land_where_the_evidence_keeps_them():
    result = new()
    result = upgrade_record_step(result, "snapshot", {"id": "s1", "provider": "podman"})
    result = upgrade_record_step(result, "stage", {"release_upgrade": True, "package": "orthanc=1"})
    result = upgrade_record_step(result, "switch", {"version": "1.12.7", "database_version": 6, "downtime_s": 5.2,
                                                    "phases": {"down_s": 5.0}})
    result = upgrade_record_step(result, "verify", [{"check": "a", "status": "passed"}])
    result = upgrade_record_step(result, "revert", {"id": "s1", "verified": True})
    result = upgrade_record_step(result, "verify_after_rollback", [{"check": "a", "status": "failed"}])
    result = upgrade_record_step(result, "lock", {"anything": 1})
    assert result["snapshot"]["id"] == "s1" and result["staged"]["package"] == "orthanc=1"
    assert result["versions"]["os_release_upgrade"] is True
    assert result["versions"]["after"] == "1.12.7" and result["versions"]["database_after"] == 6
    assert result["timings"]["switch_downtime_s"] == 5.2 and result["switch"]["phases"] == {"down_s": 5.0}
    assert result["verification"][0]["check"] == "a" and result["snapshot_reverted"]["verified"] is True
    assert failed_checks(result["rollback_verification"]) == [{"check": "a", "status": "failed"}]
    assert upgrade_record_step(result, "switch", None) == result
    assert upgrade_record_step(result, "switch", "") == result


def test_timings_measure_from_the_recorded_starts():
    result = upgrade_timing(new(), "started", 100.0)
    result = upgrade_timing(result, "upgrade_wall_s", 194.26)
    result = upgrade_timing(result, "rollback_started", 200.0)
    result = upgrade_timing(result, "rollback_wall_s", 210.44)
    assert result["timings"]["upgrade_wall_s"] == 94.3
    assert result["timings"]["rollback_wall_s"] == 10.4
    assert result["timings"]["rollback_started_epoch"] == 200.0
    assert "_started" not in upgrade_public(result)["timings"]
    with pytest.raises(ValueError, match="unknown timing"):
        upgrade_timing(result, "nap", 1)


def test_run_metadata_from_awx_variables():
    meta = upgrade_run_metadata({"awx_job_id": 4711, "awx_user_name": "nightly", "awx_schedule_name": "Sunday 02:00",
                                 "tower_job_template_name": "Upgrade PACS", "awx_project_revision": "a" * 40},
                                "", "CHG-1234", "/nonexistent", epoch=0)
    assert meta["id"] == "awx-4711" and meta["user"] == "nightly" and meta["change_ticket"] == "CHG-1234"
    assert meta["awx"]["schedule"] == "Sunday 02:00" and meta["awx"]["job_template"] == "Upgrade PACS"
    assert meta["revision"] == "a" * 40
    assert meta["started"] == "1970-01-01T00:00:00Z"
    assert meta["controller"]


def test_run_metadata_outside_awx_names_a_unique_run_and_reads_the_checkout():
    a = upgrade_run_metadata({}, "", "", str(ROOT))
    b = upgrade_run_metadata({}, "", "", str(ROOT))
    assert a["id"] != b["id"] and a["awx"]["job_id"] is None and a["change_ticket"] is None
    assert upgrade_run_metadata({}, "given-id", "", "")["id"] == "given-id"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode == 0:  # a git checkout (CI clones one): the same answer as git, without running git
        assert a["revision"] == head.stdout.strip()


def test_git_revision_of_a_plain_directory_is_none(tmp_path):
    assert git_revision(str(tmp_path)) is None
    assert git_revision("") is None


def test_git_revision_reads_packed_refs_and_detached_heads(tmp_path):
    git = tmp_path / ".git"
    git.mkdir()
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "packed-refs").write_text("# pack-refs with: peeled\n" + "b" * 40 + " refs/heads/main\n")
    assert git_revision(str(tmp_path)) == "b" * 40
    (git / "HEAD").write_text("c" * 40 + "\n")
    assert git_revision(str(tmp_path)) == "c" * 40


class HostVars(dict):
    """hostvars as Ansible gives it to a filter: a mapping of host -> its variables."""


def test_the_summary_lists_every_host_including_those_not_attempted():
    up = upgrade_step_end(upgrade_step_begin(new(), "lock", 1), "passed", 2)
    up.update(outcome="upgraded", snapshot={"id": "snap-1"})
    up["versions"].update(before="1.10.1", after="1.12.7")
    failed = upgrade_result_new("pacs2", "pacs", RUN, "1.12.7")
    failed.update(outcome="rolled_back", failed_step="verify: x")
    stale = upgrade_result_new("pacs4", "pacs", {"id": "an-older-run"}, "1.12.7")
    stale["outcome"] = "upgraded"
    hostvars = HostVars(pacs1={"upgrade_result": up}, pacs2={"upgrade_result": failed}, pacs3={},
                        pacs4={"upgrade_result": stale})
    summary = upgrade_run_summary(hostvars, ["pacs1", "pacs2", "pacs3", "pacs4"], RUN, "/ev")
    outcomes = {r["host"]: r["outcome"] for r in summary["hosts"]}
    assert outcomes == {"pacs1": "upgraded", "pacs2": "rolled_back", "pacs3": "not_attempted", "pacs4": "not_attempted"}
    assert summary["counts"] == {"upgraded": 1, "rolled_back": 1, "not_attempted": 2}
    assert summary["ok"] is False
    assert summary["hosts"][0]["evidence"] == f"/ev/upgrade-{RUN['id']}/pacs1.json"
    assert summary["hosts"][0]["snapshot_id"] == "snap-1"
    line = upgrade_summary_line(summary["hosts"][0])
    assert line.startswith("pacs1: UPGRADED 1.10.1 -> 1.12.7, snapshot snap-1")
    assert "failed step: verify: x" in upgrade_summary_line(summary["hosts"][1])
    assert upgrade_summary_lines(summary)[0] == f"run {RUN['id']}: 2 not_attempted, 1 rolled_back, 1 upgraded"
    assert upgrade_summary_lines(summary)[3] == "pacs3: NOT_ATTEMPTED"
    assert upgrade_run_summary(HostVars(pacs1={"upgrade_result": up}), ["pacs1"], RUN)["ok"] is True


def test_discovery_reports_versions_and_every_problem():
    packages = {"orthanc": [{"version": "1.10.1+dfsg-2+deb12u1"}]}
    ok = product_discovery({"version": "1.10.1", "database_version": 6}, "orthanc", "orthanc", packages, "http://p")
    assert ok == {"product": "orthanc", "version": "1.10.1", "database_version": 6, "package": "orthanc",
                  "package_version": "1.10.1+dfsg-2+deb12u1", "problems": []}
    down = product_discovery({"failed": True, "msg": "connection refused"}, "orthanc", "orthanc", packages, "http://p")
    assert down["version"] == "" and "did not answer: connection refused" in down["problems"][0]
    missing = product_discovery({"version": "1.10.1"}, "orthanc", "orthanc", {}, "http://p")
    assert "package orthanc is not installed" in missing["problems"][0]
    mismatch = product_discovery({"version": "1.12.7"}, "orthanc", "orthanc", packages, "http://p")
    assert "reports 1.12.7 but the installed package is 1.10.1+dfsg-2+deb12u1" in mismatch["problems"][0]


def test_every_filter_is_registered():
    names = FilterModule().filters()
    for name in ("upgrade_run_metadata", "upgrade_result_new", "upgrade_step_begin", "upgrade_step_end",
                 "upgrade_running_step", "upgrade_public", "upgrade_run_summary", "upgrade_timing",
                 "upgrade_record_step", "failed_checks", "upgrade_summary_line", "upgrade_summary_lines",
                 "product_discovery"):
        assert callable(names[name])
