"""After the controller was killed in the switch and the upgrade was run again: resumed, verified, evidence."""

import json

import testlib

testinfra_hosts = ["ansible://pacs"]
HOST = "mol-upgrade-pacs"
REST = testlib.OrthancRest("http://127.0.0.1:38042")


def resumed_run() -> dict:
    runs = testlib.evidence_files(HOST)
    assert len(runs) == 1, "the killed run wrote no evidence; the rerun wrote one file"
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


def test_the_lock_is_released_and_the_journal_is_closed(host):
    assert not host.file("/var/lib/clinical-upgrade/run.lock").exists
    journal = json.loads(host.file("/var/lib/clinical-upgrade/run.journal.json").content_string)
    run = resumed_run()
    assert journal["run_id"] == run["run"]["id"]
    assert journal["phase"] == "finished" and journal["outcome"] == "upgraded"
    assert journal["resumed_from"] == run["resumed_from"]["run_id"]
    assert host.file("/var/lib/clinical-upgrade/run.journal.json").mode == 0o640


def test_the_new_version_runs():
    assert REST.json("/system")["Version"] == "1.12.7"


def test_every_seeded_instance_is_intact():
    missing, different = testlib.seed_instances_problems(REST)
    assert not missing and not different, f"missing {missing[:3]}, different {different[:3]}"


def test_every_store_the_pacs_acknowledged_through_both_runs_is_there():
    acknowledged, missing = testlib.acknowledged_but_missing(REST)
    assert acknowledged >= 100, f"the sender got only {acknowledged} acknowledgements: see sender.log"
    assert not missing, f"{len(missing)} of {acknowledged} acknowledged instances are gone, e.g. {missing[:3]}"
