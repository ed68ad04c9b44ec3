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
    manifest = testlib.seed_manifest()
    bad = []
    for sop_uid, entry in manifest.items():
        instance = REST.instance_by_sop_uid(sop_uid)
        if instance is None or testlib.dataset_digest_of_bytes(
                REST.request(f"/instances/{instance}/file")) != testlib.seed_digest(entry):
            bad.append(sop_uid)
    assert not bad, f"{len(bad)} of {len(manifest)} seeded instances missing or different"


def test_stored_files_are_byte_for_byte_the_same(host):
    before = testlib.storage_hashes((testlib.EPHEMERAL / f"storage-before-{HOST}.sha256").read_text())
    after = testlib.storage_hashes(host.check_output(
        "cd /var/lib/orthanc && find . -type f -print0 | sort -z | xargs -0 sha256sum"))
    assert len(before) == 600
    assert {p: after.get(p) for p in before} == before


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
