"""filter_plugins/upgrade.py: the one result per host, its steps, the run metadata and summary."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))

from upgrade import (  # noqa: E402
    FilterModule,
    downtime_intervals,
    failed_checks,
    git_revision,
    product_discovery,
    upgrade_downtime,
    upgrade_downtime_lines,
    upgrade_public,
    upgrade_record_step,
    upgrade_result_new,
    upgrade_run_metadata,
    upgrade_run_summary,
    upgrade_running_step,
    upgrade_snapshot_mark,
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
                "switch", "verification", "rollback_verification", "failed_step", "message", "downtime"):
        assert key in result
    assert result["downtime"]["measured"] is False and result["downtime"]["total_s"] is None
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
    # The health check that verifies a revert on demand without a baseline lands in the same place.
    checked = upgrade_record_step(result, "check_after_rollback", [{"check": "b", "status": "passed"}])
    assert checked["rollback_verification"] == [{"check": "b", "status": "passed"}]


def test_a_revert_on_demand_keeps_from_the_mark_the_upgrade_stored_in_the_snapshot():
    mark = {"last_change": 812, "since": "@1796170000.25", "marker": "/var/lib/clinical-upgrade/pacs-mark.json"}
    record = {"id": "s1", "created": "2026-12-02T01:18:23Z", "annotations": {"run": "r1", "mark": mark}}
    kept = upgrade_snapshot_mark(record)
    assert kept == mark and kept is not mark


@pytest.mark.parametrize("annotations", [None, {}, {"run": "r1"}, {"mark": None}, {"mark": {}}])
def test_a_snapshot_without_a_mark_keeps_from_its_creation_less_a_margin(annotations):
    record = {"id": "s1", "created": "2026-12-02T01:18:23Z"}
    if annotations is not None:
        record["annotations"] = annotations
    assert upgrade_snapshot_mark(record) == {"since": "2026-12-02T01:08:23Z", "last_change": None, "from": "created",
                                             "recorded": "2026-12-02T01:18:23Z"}
    assert upgrade_snapshot_mark(record, 0)["since"] == "2026-12-02T01:18:23Z"
    assert upgrade_snapshot_mark(record, "3600")["since"] == "2026-12-02T00:18:23Z"


def test_a_snapshot_mark_needs_a_record():
    assert upgrade_snapshot_mark({"id": "s1"}) is None
    with pytest.raises(ValueError, match="snapshot record"):
        upgrade_snapshot_mark("s1")


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
                 "product_discovery", "upgrade_downtime", "upgrade_downtime_lines", "upgrade_snapshot_mark"):
        assert callable(names[name])


# ---- the downtime the probe measured (upgrade_downtime) ---------------------------------------------

T0 = 1_800_000_000.0
TARGET = {"host": "127.0.0.1", "port": 14242, "called_ae": "PACS1", "calling_ae": "CUVERIFY"}


def steps_result(plan):
    """A result whose step records run back to back: plan is [(name, start offset, end offset or None)]."""
    result = new()
    for name, begin, end in plan:
        result = upgrade_step_begin(result, name, T0 + begin)
        if end is not None:
            result = upgrade_step_end(result, "passed", T0 + end)
    return result


def probe_file(tmp_path, states, interval=0.2, timeout=1.0, stopped=True, start=0.0):
    """A probe's samples file: states is [(duration in s, ok, reason)], sampled every interval (or timeout)."""
    path = tmp_path / "pacs1-downtime-probe.jsonl"
    lines = [{"probe": "dicom_echo", "target": "PACS1@127.0.0.1:14242", "interval_s": interval,
              "timeout_s": timeout, "pid": 1, "started": T0 + start}]
    t = T0 + start
    count = 0
    for duration, ok, reason in states:
        until = t + duration
        while t < until - 1e-9:
            step = interval if ok or reason != "timeout" else timeout
            sample = {"t": round(t, 3), "ok": ok, "ms": 5.0 if ok else step * 1000.0}
            if not ok:
                sample["reason"] = reason
            lines.append(sample)
            count += 1
            t += step
    if stopped:
        lines.append({"stopped": round(t, 3), "samples": count, "why": "signal"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def probe(path, **extra):
    info = {"enabled": True, "target": TARGET, "interval_s": 0.2, "timeout_s": 1.0, "file": str(path),
            "start": {"rc": 0, "stdout": "{}", "stderr": ""},
            "stop": {"rc": 0, "stdout": json.dumps({"was_running": True, "signal": "TERM", "pid": 1})}}
    info.update(extra)
    return info


UPGRADE_PLAN = [("precheck", -20, -1), ("lock", 0, 1), ("mark", 1, 2), ("snapshot", 2, 12), ("stage", 12.02, 40),
                ("switch", 40, 60), ("verify", 60.02, 80)]


def test_every_outage_is_an_interval_attributed_to_the_step_running_then(tmp_path):
    # up 5 s; the snapshot pauses the PACS (echoes time out) 5 s; up; the switch refuses 7 s; up to the end
    path = probe_file(tmp_path, [(5, True, None), (5, False, "timeout"), (40, True, None),
                                 (7, False, "connection_refused"), (23, True, None)])
    result = upgrade_downtime(steps_result(UPGRADE_PLAN), probe(path), T0 + 81)
    downtime = result["downtime"]
    assert downtime["measured"] is True and downtime["complete"] is True and downtime["reason"] is None
    assert downtime["probe_interval_s"] == 0.2 and downtime["target"] == "PACS1@127.0.0.1:14242"
    assert [(i["steps"], i["duration_s"]) for i in downtime["intervals"]] == [(["snapshot"], 5.0), (["switch"], 7.0)]
    first = downtime["intervals"][0]
    assert first["start"] == "2027-01-15T08:00:05.00Z" and first["end"] == "2027-01-15T08:00:10.00Z"
    assert first["failed_echoes"] == 5 and first["reasons"] == {"timeout": 5} and first["ongoing"] is False
    assert downtime["intervals"][1]["reasons"] == {"connection_refused": 35}
    assert downtime["total_s"] == 12.0 and downtime["longest_s"] == 7.0 and downtime["count"] == 2
    assert downtime["by_step"] == {"snapshot": 5.0, "switch": 7.0}
    assert downtime["probe"]["ended"] == "stopped" and downtime["probe"]["failed"] == 40
    json.dumps(upgrade_public(result))
    lines = upgrade_downtime_lines(downtime)
    assert lines[0] == "downtime: 12.0 s in 2 interval(s), longest 7.0 s (C-ECHO to PACS1@127.0.0.1:14242 every 0.2 s)"
    assert lines[2] == ("  2027-01-15T08:00:50.00Z -> 2027-01-15T08:00:57.00Z: 7.0 s during switch "
                        "[connection_refused x35]")


def test_an_outage_across_steps_names_each_and_splits_its_seconds(tmp_path):
    plan = [("lock", 0, 1), ("mark", 1, 2), ("snapshot", 2, 10), ("stage", 10, 20), ("switch", 20, 30),
            ("verify", 30, 40), ("preserve", 45, 50), ("revert", 50, 60), ("redeliver", 60, 70),
            ("verify_after_rollback", 70, 80)]
    # down from 48 s (preserve stops the PACS) to 63 s (the restored PACS answers during the re-delivery)
    path = probe_file(tmp_path, [(48, True, None), (15, False, "connection_refused"), (17, True, None)])
    downtime = upgrade_downtime(steps_result(plan), probe(path), T0 + 80)["downtime"]
    assert downtime["intervals"][0]["steps"] == ["preserve", "revert", "redeliver"]
    assert downtime["by_step"] == {"preserve": 2.0, "revert": 10.0, "redeliver": 3.0}
    assert downtime["total_s"] == downtime["longest_s"] == 15.0


def test_a_blip_between_steps_is_counted_and_said_to_be_between_steps(tmp_path):
    plan = [("lock", 0, 1), ("snapshot", 1, 2), ("stage", 3, 10)]
    path = probe_file(tmp_path, [(2.2, True, None), (0.2, False, "aborted"), (7.6, True, None)])
    downtime = upgrade_downtime(steps_result(plan), probe(path), T0 + 10)["downtime"]
    assert downtime["intervals"][0]["steps"] == [] and downtime["intervals"][0]["duration_s"] == 0.2
    assert downtime["by_step"] == {"between steps": 0.2}
    assert "during between steps [aborted x1]" in upgrade_downtime_lines(downtime)[1]


def test_no_outage_is_measured_zero_not_unknown(tmp_path):
    path = probe_file(tmp_path, [(10, True, None)])
    downtime = upgrade_downtime(steps_result(UPGRADE_PLAN), probe(path), T0 + 10)["downtime"]
    assert downtime["measured"] is True and downtime["total_s"] == 0.0 and downtime["longest_s"] == 0.0
    assert downtime["intervals"] == [] and downtime["count"] == 0


@pytest.mark.parametrize(("change", "reason"), [
    (None, "no probe ran"),
    ("stop only", "no probe ran"),
    ({"enabled": False}, "the probe is switched off (upgrade_probe_enabled: false)"),
    ({"target": None}, "the product names no service to probe"),
    ({"error": "template error\nthe endpoint has no pacs_dicom"},
     "the probe did not start: the endpoint has no pacs_dicom"),
    ({"start": {"rc": 2, "stderr": "downtime probe: called_ae is empty: give the AE title\n"}},
     "the probe did not start: downtime probe: called_ae is empty"),
    ({"start": {"failed": True, "msg": "[Errno 2] No such file or directory: '/venv/bin/python'"}},
     "the probe did not start: [Errno 2] No such file"),
    ({"start": {"skipped": True}}, "the probe's start was skipped"),
    ({"file": "/nonexistent/pacs1-downtime-probe.jsonl"}, "the probe's samples cannot be read"),
])
def test_nothing_measured_is_never_reported_as_zero(tmp_path, change, reason):
    path = probe_file(tmp_path, [(10, True, None)])
    info = None if change is None else {"stop": {"skipped": True}} if change == "stop only" else probe(path, **change)
    downtime = upgrade_downtime(steps_result(UPGRADE_PLAN), info, T0 + 90)["downtime"]
    assert downtime["measured"] is False and downtime["complete"] is False
    assert downtime["total_s"] is None and downtime["longest_s"] is None and downtime["intervals"] == []
    assert downtime["reason"].startswith(reason), downtime["reason"]
    assert upgrade_downtime_lines(downtime)[0].startswith("downtime: NOT MEASURED (" + reason)


def test_a_probe_without_any_answer_measured_nothing(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text(json.dumps({"probe": "dicom_echo", "interval_s": 0.2, "timeout_s": 1.0}) + "\n")
    downtime = upgrade_downtime(steps_result(UPGRADE_PLAN), probe(path), T0 + 90)["downtime"]
    assert downtime["measured"] is False and downtime["reason"] == "the probe recorded no answer"
    assert downtime["probe"]["samples"] == 0


def test_a_probe_that_never_got_an_answer_measured_nothing(tmp_path):
    path = probe_file(tmp_path, [(20, False, "name_resolution")])
    downtime = upgrade_downtime(steps_result(UPGRADE_PLAN), probe(path), T0 + 20)["downtime"]
    assert downtime["measured"] is False and downtime["total_s"] is None
    assert downtime["reason"] == ("the probe never got an answer from PACS1@127.0.0.1:14242 (name_resolution): "
                                  "check that the controller reaches it")
    assert downtime["probe"]["failed"] == 100


def test_a_probe_that_died_early_is_measured_but_incomplete(tmp_path):
    # the probe died 30 s into the run (no stop record; stop found no process): the rest is a gap
    path = probe_file(tmp_path, [(30, True, None)], stopped=False)
    stop = {"rc": 0, "stdout": json.dumps({"was_running": False, "pid": 1, "why": "process 1 is not running"})}
    downtime = upgrade_downtime(steps_result(UPGRADE_PLAN), probe(path, stop=stop), T0 + 81)["downtime"]
    assert downtime["measured"] is True and downtime["complete"] is False
    assert downtime["probe"]["ended"] == "died"
    assert "the probe ended (died) before the run stopped it" in downtime["reason"]
    assert downtime["gaps"][-1]["start"] == "2027-01-15T08:00:29.80Z" and downtime["gaps"][-1]["duration_s"] == 51.2
    assert "INCOMPLETE" in upgrade_downtime_lines(downtime)[0]


def test_a_stall_of_the_probe_is_a_gap_and_an_outage_still_open_at_the_end_is_ongoing(tmp_path):
    path = tmp_path / "p.jsonl"
    samples = [{"t": T0, "ok": True, "ms": 3}, {"t": T0 + 0.2, "ok": True, "ms": 3},
               {"t": T0 + 10.2, "ok": True, "ms": 3},  # nothing for 10 s: the controller stalled
               {"t": T0 + 10.4, "ok": False, "ms": 1000, "reason": "timeout"},
               {"t": T0 + 11.4, "ok": False, "ms": 1000, "reason": "timeout"}]
    path.write_text("".join(json.dumps(s) + "\n" for s in samples) + '{"t": 1800000012.0, "ok": tr\n')
    downtime = upgrade_downtime(steps_result([("switch", 0, None)]), probe(path), T0 + 13)["downtime"]
    assert downtime["gaps"][0]["duration_s"] == 10.0 and downtime["complete"] is False
    assert downtime["intervals"][0]["ongoing"] is True and downtime["intervals"][0]["duration_s"] == 2.0
    assert downtime["intervals"][0]["steps"] == ["switch"]  # a step still running counts to its end
    assert "still did not answer when the probe stopped" in downtime["reason"]


def test_intervals_of_bare_samples():
    samples = [{"t": 0.0, "ok": False, "ms": 100}, {"t": 0.2, "ok": True, "ms": 5}, {"t": 0.4, "ok": True, "ms": 5}]
    outages, gaps = downtime_intervals(samples)
    assert [(o["start_epoch"], o["end_epoch"], o["duration_s"]) for o in outages] == [(0.0, 0.2, 0.2)]
    assert gaps == [] and downtime_intervals([]) == ([], [])


def test_the_summary_shows_the_downtime_of_changed_hosts_only(tmp_path):
    path = probe_file(tmp_path, [(5, True, None), (5, False, "timeout"), (40, True, None),
                                 (7, False, "connection_refused"), (23, True, None)])
    up = upgrade_downtime(steps_result(UPGRADE_PLAN), probe(path), T0 + 81)
    up.update(outcome="upgraded")
    unmeasured = upgrade_downtime(upgrade_result_new("pacs2", "pacs", RUN, "1.12.7"), probe(path, enabled=False))
    unmeasured.update(outcome="rolled_back")
    current = upgrade_result_new("pacs3", "pacs", RUN, "1.12.7")
    current.update(outcome="already_current")
    hostvars = HostVars(pacs1={"upgrade_result": up}, pacs2={"upgrade_result": unmeasured},
                        pacs3={"upgrade_result": current})
    summary = upgrade_run_summary(hostvars, ["pacs1", "pacs2", "pacs3"], RUN, "/ev")
    rows = {r["host"]: r for r in summary["hosts"]}
    assert rows["pacs1"]["downtime"] == {"measured": True, "complete": True, "total_s": 12.0, "longest_s": 7.0,
                                         "count": 2, "longest_during": ["switch"], "reason": None}
    assert rows["pacs3"]["downtime"] is None
    assert ", downtime 12.0 s in 2 interval(s) (longest 7.0 s, switch)," in upgrade_summary_line(rows["pacs1"])
    assert ", downtime NOT MEASURED," in upgrade_summary_line(rows["pacs2"])
    assert "downtime" not in upgrade_summary_line(rows["pacs3"])
    json.dumps(summary)


# Run in a process of its own, so that ansible's configuration (the project's filter_plugins) is this one.
LAZY_COPY_PROBE = r'''
import json, statistics, sys, time
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
sys.path.insert(0, sys.argv[1])
from upgrade import upgrade_result_new, upgrade_step_begin, upgrade_step_end
loader = DataLoader()
# Variables read from YAML carry ansible's tags (origin), as the role defaults, vars and inventory of a run do.
others = loader.load_from_file(sys.argv[2])
result = upgrade_result_new("pacs1", "pacs", {"id": "x"}, "1.12.7")
result["baseline"] = {"instances": [{"sop": "1.2.%d" % i, "md5": "ab" * 16} for i in range(1000)]}
for n in range(10):
    result = upgrade_step_end(upgrade_step_begin(result, "s%d" % n, n), "passed", n + 1)
templar = Templar(loader=loader, variables={"upgrade_result": result, "others": others})
def median_s(expr):
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        templar.template(trust_as_template(expr))
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)
ours = median_s("{{ upgrade_result | upgrade_step_begin('next', 100) | upgrade_step_end('passed', 101) }}")
peer = median_s("{{ upgrade_result | combine({'outcome': 'x'}) | combine({'message': 'y'}) }}")
print(json.dumps({"ours": ours, "combine": peer}))
'''


def test_the_step_filters_cost_what_combine_costs_however_many_variables_the_run_holds(tmp_path):
    """ansible-core 2.19 hands filters lazy containers whose deepcopy copies every variable of the task
    (each string read from YAML with its tags): the step filters once took seconds per call on a real run
    and grew with each step. They read the data once instead; measured against the builtin combine, which
    copies the same result, in the same process. With deepcopy the ratio was about 100."""
    others = {f"var{i}": {"items": [f"value {j}" for j in range(100)]} for i in range(200)}
    (tmp_path / "others.yml").write_text(json.dumps(others), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    out = subprocess.run([sys.executable, "-c", LAZY_COPY_PROBE, str(ROOT / "filter_plugins"),
                          str(tmp_path / "others.yml")], env=env, capture_output=True, text=True, check=True)
    times = json.loads(out.stdout.strip().splitlines()[-1])
    assert times["ours"] <= 20 * times["combine"] + 0.1, times
