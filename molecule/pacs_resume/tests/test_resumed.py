"""After the controller was killed in the switch and the upgrade was run again: resumed, verified, evidence.
Then the host was reverted to the upgrade's snapshot on demand (playbooks/rollback.yml), the modality
still sending: 1.10.1 again, and nothing it acknowledged lost."""

import json

import testlib

testinfra_hosts = ["ansible://pacs"]
HOST = "mol-pacs2"
REST = testlib.OrthancRest("http://127.0.0.1:27042")


def is_revert(run: dict) -> bool:
    return bool(run["steps"]) and run["steps"][0]["name"] == "prepare_revert"


def resumed_run() -> dict:
    runs = [r for r in testlib.evidence_files(HOST) if not is_revert(r)]
    assert len(runs) == 1, "the killed run wrote no evidence; the rerun wrote one file"
    return runs[0]


def reverted_run() -> dict:
    runs = [r for r in testlib.evidence_files(HOST) if is_revert(r)]
    assert len(runs) == 1, "the revert on demand wrote one evidence file (see reverted-run.log)"
    assert runs[0]["outcome"] == "reverted", (runs[0]["outcome"], runs[0]["message"])
    return runs[0]


def test_the_first_run_was_killed_in_the_switch():
    log = (testlib.EPHEMERAL / "interrupted-run.log").read_text()
    assert "Switch to the new release" in log or "switch" in log.lower()
    assert "PLAY RECAP" not in log, "the killed run must not have finished"


def test_the_rerun_said_which_run_was_interrupted_and_in_which_phase():
    log = (testlib.EPHEMERAL / "resumed-run.log").read_text()
    run = resumed_run()
    old = run["resumed_from"]["run_id"]
    assert f"run {old} was interrupted in phase switch" in log
    assert "Another upgrade is running" not in log and "nothing was changed" not in log
    assert "failed=0" in log and log.rstrip().endswith("rc=0")


def test_the_evidence_says_upgraded_and_resumed_from_the_killed_run():
    run = resumed_run()
    resumed = run["resumed_from"]
    assert run["outcome"] == "upgraded"
    assert resumed["run_id"] != run["run"]["id"]
    assert resumed["phase"] == "switch" and resumed["plan"] == "verify" and resumed["changed"] is True
    assert resumed["baseline_file"].endswith(f"{HOST}-baseline-{resumed['run_id']}.json")
    assert run["baseline"]["run_id"] == resumed["run_id"], "compared with the baseline recorded before the change"
    assert run["versions"]["before"] == "1.10.1" and run["versions"]["target"] == "1.12.7"
    assert run["versions"]["after"] == "1.12.7"
    assert run["snapshot"]["id"], "the interrupted run's snapshot is kept for a later rollback"
    assert run["precheck"] == [], "no precheck of the changed host: its state now is not a baseline"
    steps = [s["name"] for s in run["steps"]]
    assert steps[0] == "lock" and "verify" in steps and "switch" not in steps


def test_the_verification_against_the_recorded_baseline_passed():
    run = resumed_run()
    checks = {r["check"]: r["status"] for r in run["verification"]}
    assert checks and set(checks.values()) == {"passed"}, checks
    assert checks["version_is_expected"] == "passed"
    assert checks["instances_preserved"] == "passed"


def test_the_lock_is_released_and_the_journal_is_the_reverts_own(host):
    """The revert brought back the upgrade run's lock and journal (as they were at the snapshot); the
    revert's run took both over and closed them."""
    assert not host.file("/var/lib/clinical-upgrade/run.lock").exists
    journal = json.loads(host.file("/var/lib/clinical-upgrade/run.journal.json").content_string)
    run = reverted_run()
    assert journal["run_id"] == run["run"]["id"]
    assert journal["phase"] == "finished" and journal["outcome"] == "reverted"
    assert host.file("/var/lib/clinical-upgrade/run.journal.json").mode == 0o640


def test_the_revert_on_demand_said_what_it_kept_and_passed():
    log = (testlib.EPHEMERAL / "reverted-run.log").read_text()
    run, upgrade = reverted_run(), resumed_run()
    assert "failed=0" in log and log.rstrip().endswith("rc=0"), log[-3000:]
    assert f"Reverting {HOST} to snapshot {upgrade['snapshot']['id']}" in log
    assert "since the mark of that run" in log and "Verified against the baseline of that run" in log
    assert run["snapshot"]["id"] == upgrade["snapshot"]["id"]
    assert run["versions"]["before"] == "1.12.7" and run["versions"]["after"] == "1.10.1"
    assert run["mark"]["last_change"] == upgrade["mark"]["last_change"], "the mark stored in the snapshot's record"
    assert run["preserved"]["count"] > 0, "the modality stored through the upgrade: some instances were kept"
    assert run["redelivered"]["not_delivered"] == []
    assert len(run["redelivered"]["delivered"]) == run["preserved"]["count"]
    checks = {r["check"]: r["status"] for r in run["rollback_verification"]}
    assert checks["instances_preserved"] == "passed" and checks["version_is_expected"] == "passed", checks
    assert set(checks.values()) == {"passed"}, checks
    steps = [s["name"] for s in run["steps"]]
    assert steps == ["prepare_revert", "lock", "preserve", "revert", "redeliver", "verify_after_rollback"], steps
    assert run["downtime"]["measured"] is True


def test_the_old_version_runs_again():
    assert REST.json("/system")["Version"] == "1.10.1"


def test_every_seeded_instance_is_intact():
    missing, different = testlib.seed_instances_problems(REST)
    assert not missing and not different, f"missing {missing[:3]}, different {different[:3]}"


def test_every_store_the_pacs_acknowledged_through_all_three_runs_is_there():
    acknowledged, missing = testlib.acknowledged_but_missing(REST)
    assert acknowledged >= 100, f"the sender got only {acknowledged} acknowledgements: see sender.log"
    assert not missing, f"{len(missing)} of {acknowledged} acknowledged instances are gone, e.g. {missing[:3]}"
