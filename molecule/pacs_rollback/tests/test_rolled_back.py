"""After the failed upgrades (a verification fault, then a configuration 1.12.7 cannot start with):
1.10.1 runs again from the snapshot, nothing lost, evidence says why."""

import datetime as dt

import testlib

testinfra_hosts = ["ansible://pacs"]
HOST = "mol-upgrade-pacs"
REST = testlib.OrthancRest("http://127.0.0.1:26042")


def test_both_runs_failed_and_said_they_rolled_back():
    for name in ("upgrade-run.log", "upgrade-run-config.log"):
        log = (testlib.EPHEMERAL / name).read_text()
        assert "Rolled back to snapshot" in log, name
        assert "failed=1" in log, name


def test_the_old_version_runs_again_on_the_old_os(host):
    assert host.package("orthanc").version.startswith("1.10.1")
    assert host.file("/etc/debian_version").content_string.startswith("12")
    assert host.service("orthanc").is_running
    assert REST.json("/system")["Version"] == "1.10.1"


def test_every_seeded_instance_is_intact():
    missing, different = testlib.seed_instances_problems(REST)
    assert not missing and not different, f"missing {missing[:3]}, different {different[:3]}"


def test_every_store_the_pacs_acknowledged_during_the_run_is_there_after_the_rollback():
    """Acknowledged after the snapshot by 1.10.1 (before the switch) and by 1.12.7 (after it): all kept."""
    acknowledged, missing = testlib.acknowledged_but_missing(REST)
    assert acknowledged >= 100, f"the sender got only {acknowledged} acknowledgements: see sender.log"
    assert not missing, f"{len(missing)} of {acknowledged} acknowledged instances are gone, e.g. {missing[:3]}"


def test_what_arrived_after_the_snapshot_was_kept_redelivered_and_proven():
    run = testlib.evidence_files(HOST)[0]
    assert int(run["preserved"]["count"]) > 0 and run["preserved"]["method"] == "stored_files", run["preserved"]
    assert len(run["redelivered"]["delivered"]) == int(run["preserved"]["count"])
    assert run["redelivered"]["not_delivered"] == []
    after = {r["check"]: r for r in run["rollback_verification"]}
    assert after["instances_preserved"]["status"] == "passed"
    assert after["instances_preserved"]["details"]["redelivered_expected"] == int(run["preserved"]["count"])


def test_stored_files_are_byte_for_byte_the_same(host):
    recorded, changed = testlib.storage_changes(host, HOST)
    assert recorded == 600
    assert not changed, f"{len(changed)} stored files changed or vanished, e.g. {changed[:3]}"


def test_no_lock_is_left_behind(host):
    assert not host.file("/var/lib/clinical-upgrade/run.lock").exists


def test_evidence_names_the_failed_step_and_the_rollback():
    runs = testlib.evidence_files(HOST)
    assert len(runs) == 2
    run = runs[0]
    assert run["outcome"] == "rolled_back"
    assert "baseline" in run["failed_step"]
    assert "expected 1.12.7-injected-fault" in run["message"]
    assert run["versions"]["before"] == "1.10.1"
    assert run["versions"]["after"] == "1.10.1"
    assert run["snapshot"]["id"] and run["snapshot_reverted"]
    after_switch = {r["check"]: r["status"] for r in run["verification"]}
    assert after_switch["version_is_expected"] == "failed"
    after_rollback = {r["check"]: r["status"] for r in run["rollback_verification"]}
    assert after_rollback and set(after_rollback.values()) == {"passed"}, after_rollback
    assert float(run["timings"]["rollback_wall_s"]) > 0


def _epoch(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


def test_a_new_version_that_cannot_start_is_given_up_at_once_with_its_own_error():
    run = testlib.evidence_files(HOST)[1]
    assert run["outcome"] == "rolled_back", run["message"]
    assert run["failed_step"].startswith("switch"), run["failed_step"]
    # Orthanc's own words, from its log, reach the message and the switch's record
    assert "Unknown DICOM tag" in run["message"], run["message"]
    assert "cannot start with this version and configuration" in run["message"]
    switch = run["switch"]
    assert switch["failed"] is True and "Unknown DICOM tag" in switch["error"]
    assert switch["phases"]["until_listening_s"] is None and switch["phases"]["failed"] is True
    # the failed start was seen within seconds, not after the switch timeout (300 s)
    assert 0 < float(switch["downtime_s"]) < 60, switch["phases"]
    after = {r["check"]: r["status"] for r in run["rollback_verification"]}
    assert after and set(after.values()) == {"passed"}, after


def test_the_pacs_was_back_in_service_within_60_s_of_the_failed_start():
    """Measured by the modality: its first acknowledged store after the switch gave up."""
    run = testlib.evidence_files(HOST)[1]
    [switch] = [s for s in run["steps"] if s["name"] == "switch"]
    gave_up = _epoch(switch["ended"])
    acks_after = sorted(a["t"] for a in testlib.acknowledged_by_sender() if a["t"] > gave_up)
    assert acks_after, "no store was acknowledged after the failed switch"
    assert acks_after[0] - gave_up <= 60, f"back in service {acks_after[0] - gave_up:.1f} s after the failed start"


def test_the_html_report_of_the_run_renders_in_chromium_with_host_outcome_and_timeline():
    """The run's report.html, rendered by headless Chromium: the screenshot is kept with the test's artifacts
    (results/test-artifacts/), and the page as rendered shows the host, its outcome and its timeline."""
    [report] = sorted(testlib.RESULTS.glob("upgrade-*/report.html"))[-1:]
    shot = testlib.PROJECT / "results" / "test-artifacts" / "pacs_rollback-report.png"
    dom = testlib.render_in_chromium(report, shot)
    assert f'id="timeline-{HOST}"' in dom and f'id="host-{HOST}"' in dom
    assert "rolled_back" in dom and "ATTENTION NEEDED" in dom
    assert dom.count('class="bar ') >= 5  # the lock, mark, snapshot, stage, switch ... steps on the time axis
