"""After three failed upgrades (a tampered archive, a release that cannot start, a failed verification):
1.0 runs, every order intact, no acknowledged order lost, and the evidence says what happened."""

import testlib

testinfra_hosts = ["ansible://ris"]
HOST = "mol-ris-rb"


def _log(name):
    return (testlib.EPHEMERAL / name).read_text()


def test_release_10_runs_on_its_own_database(host):
    assert host.check_output("readlink /opt/cu-ris/current") == "releases/1.0"
    status = testlib.ris_schema(host)
    assert (status["schema"], status["pending"]) == (1, [])
    assert host.service("ris-mllp-listener").is_running and host.service("ris-worklist").is_running
    assert not host.file("/var/lib/clinical-upgrade/run.lock").exists


def test_the_installed_releases_are_byte_for_byte_as_before(host):
    """Neither the refused run nor the rolled back ones left a file of 1.1, a partial stage or a changed file."""
    assert testlib.install_tree(host) + "\n" == (testlib.EPHEMERAL / f"install-before.txt-{HOST}").read_text()


def test_every_order_of_before_is_there_unchanged(host):
    before, after = testlib.orders_before(HOST), testlib.ris_orders(host)
    assert len(before) == 40
    for accession, row in before.items():
        assert accession in after, f"order {row['id']} is gone"
        changed = [c for c in testlib.ORDER_IDENTITY if after[accession][c] != row[c]]
        assert not changed, f"order {row['id']} changed its {changed}"


def test_every_order_acknowledged_during_the_runs_is_there(host):
    """Acknowledged after a snapshot by 1.0 (before the switch) and by 1.1 (after it): all there."""
    acknowledged, stored = testlib.orders_acknowledged(), testlib.ris_orders(host)
    assert len(acknowledged) >= 100, "the ordering system got too few acknowledgements: see order-sender.log"
    missing = [a["accession"] for a in acknowledged if a["accession"] not in stored]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged orders are gone, e.g. {missing[:3]}"
    assert all(stored[a["accession"]]["status"] == "scheduled" for a in acknowledged)


def test_the_tampered_archive_was_refused_before_any_change(host):
    del host
    log = _log("upgrade-run-tampered.log")
    assert "Precheck refused mol-ris-rb, nothing was changed" in log
    assert "has sha256" in log and "tampered" in log
    run = testlib.evidence_files(HOST)[0]
    assert run["outcome"] == "refused" and run["snapshot"] is None
    assert [s["name"] for s in run["steps"]] == ["precheck"]


def test_a_release_that_cannot_start_is_given_up_at_once_and_rolled_back(host):
    del host
    log = _log("upgrade-run-cannot-start.log")
    assert "injected fault: this release's listener cannot start" in log
    assert "Rolled back to snapshot" in log
    run = testlib.evidence_files(HOST)[1]
    assert run["outcome"] == "rolled_back" and run["failed_step"].startswith("switch")
    switch = next(s for s in run["steps"] if s["name"] == "switch")
    assert switch["duration_s"] < 30, switch  # not the 60 s port timeout: the failed listener ends the wait
    assert {r["check"]: r["status"] for r in run["rollback_verification"]}["version"] == "passed"
    assert run["redelivered"]["not_delivered"] == []


def test_orders_acknowledged_by_11_were_kept_and_redelivered_to_10(host):
    del host
    run = testlib.evidence_files(HOST)[2]
    assert run["outcome"] == "rolled_back" and "expected 1.1-injected-fault" in run["message"]
    assert run["preserved"]["method"] == "hl7_messages" and int(run["preserved"]["count"]) > 0, run["preserved"]
    assert len(run["redelivered"]["delivered"]) == int(run["preserved"]["count"])
    assert run["redelivered"]["not_delivered"] == []
    after = {r["check"]: r for r in run["rollback_verification"]}
    assert set(r["status"] for r in after.values()) == {"passed"}, after
    assert after["orders"]["details"]["expected"] == int(run["preserved"]["count"])
    # The kept orders' file holds their HL7 messages (patient data): only the project's user may read it.
    kept = testlib.RESULTS / f"upgrade-{run['run']['id']}" / f"{HOST}-kept" / "ris-kept-orders.json"
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
