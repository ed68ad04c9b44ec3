"""After the upgrade: Orthanc 1.12.7 on Debian 13, every seeded instance intact, evidence written."""

import pytest
import testlib

testinfra_hosts = ["ansible://pacs"]
HOST = "mol-upgrade-pacs"
REST = testlib.OrthancRest("http://127.0.0.1:26042")


def test_orthanc_is_the_target_version_and_held(host):
    pkg = host.package("orthanc")
    assert pkg.version.startswith("1.12.7")
    assert "orthanc" in host.check_output("apt-mark showhold").split()
    assert REST.json("/system")["Version"] == "1.12.7"


def test_the_os_went_through_the_release_upgrade(host):
    assert host.file("/etc/debian_version").content_string.startswith("13")


def test_orthanc_runs_enabled_and_nothing_is_left_blocking_services(host):
    svc = host.service("orthanc")
    assert svc.is_running and svc.is_enabled
    assert not host.file("/usr/sbin/policy-rc.d").exists
    assert not host.file("/etc/systemd/system/orthanc.service.d/clinical-upgrade-migrate.conf").exists


# Every test takes the host fixture: testinfra runs the host's tests first, in file order, and the
# others after them, so a test without it would run after test_z's revert and see 1.10.1.


def test_every_seeded_instance_is_present_with_the_same_dataset(host):
    del host
    assert len(testlib.seed_manifest()) == 600
    missing, different = testlib.seed_instances_problems(REST)
    assert not missing, f"{len(missing)} seeded instances missing, e.g. {missing[:3]}"
    assert not different, f"{len(different)} instances differ from the seed, e.g. {different[:3]}"


def test_every_store_the_pacs_acknowledged_during_the_run_is_there(host):
    """A modality stored every 200 ms through the whole converge (and its idempotence run)."""
    del host
    acknowledged, missing = testlib.acknowledged_but_missing(REST)
    assert acknowledged >= 100, f"the sender got only {acknowledged} acknowledgements: see sender.log"
    assert not missing, f"{len(missing)} of {acknowledged} acknowledged instances are gone, e.g. {missing[:3]}"


def test_the_verification_saw_the_instances_that_arrived(host):
    del host
    upgraded = testlib.evidence_files(HOST)[0]
    preserved = next(r for r in upgraded["verification"] if r["check"] == "instances_preserved")
    assert preserved["details"]["missing"] == 0 and preserved["details"]["arrived"] > 0, preserved


def test_stored_files_are_byte_for_byte_the_same(host):
    recorded, changed = testlib.storage_changes(host, HOST)
    assert recorded == 600
    assert not changed, f"{len(changed)} stored files changed or vanished, e.g. {changed[:3]}"


def test_evidence_of_the_upgrade_then_of_the_idempotent_run(host):
    del host
    runs = testlib.evidence_files(HOST)
    assert [r["outcome"] for r in runs] == ["upgraded", "already_current"], [r["outcome"] for r in runs]
    upgraded = runs[0]
    assert upgraded["versions"]["before"] == "1.10.1"
    assert upgraded["versions"]["after"] == "1.12.7"
    assert upgraded["snapshot"]["provider"] == "podman"
    assert upgraded["snapshot"]["id"]
    assert 0 < float(upgraded["timings"]["switch_downtime_s"]) < 300
    checks = {r["check"]: r["status"] for r in upgraded["verification"]}
    for name in ("dicom_echo", "pacs_info", "dicom_query_studies", "dicom_roundtrip", "instances_preserved",
                 "stored_files_read_back", "canary_instances", "counts_not_lower", "version_is_expected"):
        assert checks.get(name) == "passed", (name, checks)
    assert upgraded["failed_step"] is None


@pytest.fixture(scope="module")
def verify_result():
    return testlib.run_verify_playbook(testlib.RESULTS / "verify")


def test_health_checks_pass_after_the_upgrade(host, verify_result):
    del host
    assert verify_result["_returncode"] == 0, verify_result["_stdout"][-3000:]
    assert verify_result["summary"]["failed"] == 0
    assert {c["check"] for c in verify_result["checks"]} == {"dicom_echo", "pacs_info", "dicom_query_studies",
                                                             "dicom_roundtrip"}


def test_z_manual_rollback_returns_to_the_recorded_snapshot(host):
    """Last (in file order, among the host's tests): playbooks/rollback.yml lists the snapshot and reverts
    to it on demand, keeping what the modality stored since the snapshot."""
    snapshot_id = testlib.evidence_files(HOST)[0]["snapshot"]["id"]
    listed = testlib.run_playbook("rollback.yml", "-e", "snapshot_action=list")
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-2000:]
    assert snapshot_id in listed.stdout
    reverted = testlib.run_playbook("rollback.yml", "-e", f"snapshot_id={snapshot_id}")
    assert reverted.returncode == 0, reverted.stdout[-3000:] + reverted.stderr[-2000:]
    assert "mol-upgrade-pacs: REVERTED 1.12.7 -> 1.10.1, snapshot " + snapshot_id in reverted.stdout
    revert = testlib.evidence_files(HOST)[-1]
    assert revert["outcome"] == "reverted" and revert["versions"]["after"] == "1.10.1"
    # What the modality stored during the upgrade (after the snapshot) was kept and re-delivered.
    assert revert["preserved"]["count"] > 0 and revert["redelivered"]["not_delivered"] == []
    assert REST.json("/system")["Version"] == "1.10.1"
    assert host.file("/etc/debian_version").content_string.startswith("12")
    missing, different = testlib.seed_instances_problems(REST)
    assert not missing and not different
    acknowledged, lost = testlib.acknowledged_but_missing(REST)
    assert acknowledged > 0 and not lost, f"{len(lost)} of {acknowledged} acknowledged instances lost by the revert"
