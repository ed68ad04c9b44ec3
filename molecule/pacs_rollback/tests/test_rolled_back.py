"""After the failed upgrade: 1.10.1 runs again from the snapshot, nothing lost, evidence says why."""

import testlib

testinfra_hosts = ["ansible://pacs"]
HOST = "mol-upgrade-pacs"
REST = testlib.OrthancRest("http://127.0.0.1:38042")


def test_the_run_failed_and_said_it_rolled_back():
    log = (testlib.EPHEMERAL / "upgrade-run.log").read_text()
    assert "Rolled back to snapshot" in log
    assert "failed=1" in log


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
    assert len(runs) == 1
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
