"""filter_plugins/ris.py: the RIS in the upgrade flow (discovery, the order baseline, what a rollback
keeps and how it goes back).

The order tests run the real cu-ris listener (hl7_fixtures.ListenerProcess) and read its database
with the release's own ``bin/ris-orders``, as the ris_server role does on the host. The rollback test
plays the flow's rescue for real: a mark, orders taken by 1.1 after it (new ones, a change, a
cancellation), the database of the mark restored under a 1.0 listener, the plan re-delivered over
MLLP, and every acknowledged order checked in the restored database.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hl7_fixtures import ListenerProcess, RisListener, hl7_client, release_root

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))

import ris  # noqa: E402

client = hl7_client()


def ris_orders(db, *args, version="1.1"):
    proc = subprocess.run([sys.executable, str(release_root(version) / "bin" / "ris-orders"), "--db", str(db), *args],
                          capture_output=True, text=True, timeout=30, check=True)
    return {"rc": 0, "stdout": proc.stdout, "stderr": proc.stderr}


def send(listener, control, accession, patient_id="SYN0001", modality="CT"):
    params = client.with_defaults({"host": listener.host, "port": listener.port, "message_type": "ORM^O01",
                                   "order": {"control": "NW" if control == "XO" else control,
                                             "accession_number": accession, "patient_id": patient_id,
                                             "modality": modality, "station_aetitle": "CT1"}})
    control_id = client.new_control_id()
    message = client.build_message(params, control_id)
    if control == "XO":
        message = message.replace("\rORC|NW|", "\rORC|XO|")
    ack = client.send_message(listener.host, listener.port, message, timeout=10, control_id=control_id)
    return ack["ack_code"]


@pytest.fixture
def ris11(tmp_path):
    listener = ListenerProcess(tmp_path / "ris", version="1.1")
    yield listener
    listener.stop()


# --------------------------------------------------------------------------- discovery


def link(exists=True, islnk=True, mtime=1000.0):
    return {"stat": {"exists": exists, "islnk": islnk, "mtime": mtime}}


def unit(state="active", started="Thu 1970-01-01 00:33:20.500000 UTC"):  # 2000.5
    return {"stdout": f"ActiveState={state}\nExecMainStartTimestamp={started}\n"}


STATUS = {"rc": 0, "stdout": json.dumps({"db": "/var/lib/ris/orders.sqlite", "schema": 1, "release_schema": 1,
                                         "pending": [], "orders": 12})}


def test_discovery_of_a_listener_started_within_the_second_of_the_repoint():
    """The switch starts the listener a fraction of a second after the repoint: microseconds count."""
    found = ris.ris_discovery(link(mtime=2000.4), {"version": "1.1", "schema": 1}, STATUS, unit(), "cu-ris",
                              "/opt/cu-ris", "ris-mllp-listener")
    assert found["problems"] == []


def test_discovery_of_a_running_release():
    found = ris.ris_discovery(link(), {"version": "1.0", "schema": 1}, STATUS, unit(), "cu-ris", "/opt/cu-ris",
                              "ris-mllp-listener")
    assert found["problems"] == []
    assert (found["version"], found["database_version"], found["orders"]) == ("1.0", 1, 12)
    assert found["package_version"] == "1.0"


@pytest.mark.parametrize(("args", "says"), [
    ((link(exists=False), None, {}, unit()), "/opt/cu-ris/current does not exist"),
    ((link(islnk=False), None, {}, unit()), "is not a symbolic link"),
    ((link(), None, {}, unit()), "release.json is missing"),
    ((link(), {"version": "1.0", "schema": 1}, {"rc": 78, "stderr": "database is newer"}, unit()),
     "ris-migrate --status failed (exit 78): database is newer"),
    ((link(), {"version": "1.0", "schema": 2}, STATUS, unit()), "has schema 1, release 1.0 needs 2"),
    ((link(), {"version": "1.0", "schema": 1}, STATUS, unit(state="failed")),
     "is not running (failed): start it (systemctl start ris-mllp-listener)"),
    ((link(mtime=3000), {"version": "1.0", "schema": 1}, STATUS, unit()), "was started before current was repointed"),
    ((link(mtime=2000.6), {"version": "1.0", "schema": 1}, STATUS, unit()), "was started before current was repointed"),
])
def test_discovery_problems_say_what_to_fix(args, says):
    found = ris.ris_discovery(*args, "cu-ris", "/opt/cu-ris", "ris-mllp-listener")
    assert any(says in p for p in found["problems"]), found["problems"]


# --------------------------------------------------------------------------- baseline and compare


def test_baseline_and_compare_with_real_orders(ris11):
    for i in range(12):
        assert send(ris11, "NW", f"BASE{i:04d}", patient_id=f"SYNP{i:03d}") == "AA"
    assert send(ris11, "CA", "BASE0003") == "AA"
    summary = ris.ris_orders_summary(ris_orders(ris11.db, "list"), sample=5)
    assert (summary["orders"], summary["scheduled"], summary["cancelled"], summary["max_id"]) == (12, 11, 1, 12)
    assert len(summary["sample"]) == 5 and summary["sample"][-1]["id"] == 12
    assert "BASE" not in json.dumps(summary) and "SYNP" not in json.dumps(summary)  # digests only
    # Independent count: the release's own `count`.
    counted = json.loads(ris_orders(ris11.db, "count")["stdout"])
    assert counted == {k: summary[k] for k in ("orders", "scheduled", "cancelled", "max_id")}

    # After: more orders and a cancellation of a sampled one: the identity stays, so it passes.
    assert send(ris11, "NW", "AFTER001") == "AA"
    assert send(ris11, "CA", "BASE0000") == "AA"
    record = ris.ris_orders_record(ris_orders(ris11.db, "list"), summary)
    assert record["status"] == "passed", record
    assert record["details"]["new_since_baseline"] == 1

    # A database that lost an order fails, naming the sampled id.
    rows = json.loads(ris_orders(ris11.db, "list")["stdout"])
    lost = [r for r in rows if r["id"] != 12]
    record = ris.ris_orders_record(json.dumps(lost), summary)
    assert record["status"] == "failed" and "ids 12" in record["message"], record
    # An order that must have been re-delivered and is not there fails too.
    record = ris.ris_orders_record(ris_orders(ris11.db, "list"), summary, expected=["0123456789abcdef"])
    assert record["status"] == "failed" and "re-delivered" in record["message"]
    # The orders could not be read: the record says so.
    record = ris.ris_orders_record({"rc": 78, "stderr": "database x does not exist"}, summary)
    assert record["status"] == "failed" and "exit 78" in record["message"]


def test_baseline_problems_name_the_variable():
    out = ris.ris_baseline({"echo": {"failed": True, "msg": "refused"}, "worklist": {"count": 0},
                            "release": {"failed": True}, "orders": {"rc": 1, "stderr": "boom"}}, host="ris1")
    text = " | ".join(out["problems"])
    for variable in ("endpoint_worklist_port", "ris_server_install_dir", "dicom_verify_ris_orders_argv"):
        assert variable in text
    assert out["baseline"]["orders"] is None


def test_version_record():
    import base64

    slurped = {"content": base64.b64encode(b'{"version": "1.1", "schema": 2}').decode()}
    assert ris.ris_version_record(slurped, "1.1")["status"] == "passed"
    failed = ris.ris_version_record(slurped, "1.0")
    assert failed["status"] == "failed" and "runs release 1.1, expected 1.0" in failed["message"]
    assert ris.ris_version_record({"failed": True}, "1.0")["status"] == "failed"


# --------------------------------------------------------------------------- rollback: keep and re-deliver


def test_orders_taken_after_the_mark_survive_a_rollback_to_10(tmp_path):
    """1.0 takes orders; the mark; the switch to 1.1 (migration); 1.1 takes new orders, an XO and a CA;
    the rollback restores the database of the mark and runs 1.0 again; the plan is re-delivered to it.
    Every order acknowledged since the mark must be in the restored RIS as it was acknowledged, but
    the XO of an order 1.0 already had (1.0 answers AR: it cannot change orders)."""
    work = tmp_path / "ris"
    listener = ListenerProcess(work, version="1.0")
    try:
        for i in range(5):
            assert send(listener, "NW", f"OLD{i:04d}") == "AA"
        mark = {"max_id": json.loads(ris_orders(listener.db, "count", version="1.0")["stdout"])["max_id"],
                "since": subprocess.run(["date", "--utc", "+%Y-%m-%dT%H:%M:%S.%6NZ"], capture_output=True, text=True,
                                        check=True).stdout.strip()}
        snapshot = tmp_path / "orders-at-mark.sqlite"
        shutil.copy(listener.db, snapshot)  # the snapshot, taken right after the mark (the listener is idle)
        assert send(listener, "NW", "NEW10") == "AA"  # acknowledged by 1.0 after the mark, before the switch
    finally:
        listener.stop()
    subprocess.run([sys.executable, str(release_root("1.1") / "bin" / "ris-migrate"), "--db", str(listener.db)],
                   check=True, capture_output=True)
    new = RisListener(release_root("1.1"), listener.db, listener.dir, log=tmp_path / "l11.log")
    try:
        assert send(new, "NW", "NEW11A") == "AA"
        assert send(new, "NW", "NEW11B") == "AA"
        assert send(new, "XO", "NEW11B", modality="MR") == "AA"  # a new order changed: goes back as NW (MR)
        assert send(new, "NW", "NEW11C") == "AA"
        assert send(new, "CA", "NEW11C") == "AA"  # ordered and cancelled since the mark: nothing to give back
        assert send(new, "CA", "OLD0001") == "AA"  # an older order cancelled: goes back as CA
        assert send(new, "XO", "OLD0002", modality="MR") == "AA"  # an older order changed: 1.0 cannot take it
    finally:
        new.stop()
    kept = ris.ris_kept_orders(ris_orders(listener.db, "list", "--since-id", str(mark["max_id"])),
                               ris_orders(listener.db, "list", "--changed-since", mark["since"]))
    assert sorted(r["accession"] for r in kept) == ["NEW10", "NEW11A", "NEW11B", "NEW11C", "OLD0001", "OLD0002"]
    plan = ris.ris_redelivery_plan(kept, mark)
    # The redeliver step plans from what preserve wrote ({mark, orders}): the same plan.
    assert ris.ris_redelivery_plan({"mark": mark, "orders": kept}) == plan
    assert len(plan["skipped"]) == 1 and "cancelled since the mark" in plan["skipped"][0]["why"]
    assert "NEW11" not in json.dumps(plan["skipped"])  # keys are ids and digests

    # The rollback: the database of the mark under the 1.0 listener; the plan goes through its interface.
    shutil.copy(snapshot, listener.db)
    restored = RisListener(release_root("1.0"), listener.db, listener.dir, log=tmp_path / "l10.log")
    try:
        answers = {}
        for item in plan["messages"]:
            control_id = client.normalise_raw(item["message"]).split("\r")[0].split("|")[9]
            answers[item["key"]] = client.send_message(restored.host, restored.port, item["message"], timeout=10,
                                                       control_id=control_id)["ack_code"]
    finally:
        restored.stop()
    rows = {r["accession"]: r for r in json.loads(ris_orders(listener.db, "list", version="1.0")["stdout"])}
    assert rows["NEW10"]["status"] == "scheduled"
    assert rows["NEW11A"]["status"] == "scheduled"
    assert rows["NEW11B"]["modality"] == "MR"  # the XO's values, taken as a new order
    assert "NEW11C" not in rows
    assert rows["OLD0001"]["status"] == "cancelled"
    assert rows["OLD0002"]["modality"] == "CT"  # 1.0 refused the change: it is not re-delivered...
    refused = [key for key, code in answers.items() if code != "AA"]
    assert len(refused) == 1 and refused[0].startswith(f"order {rows['OLD0002']['id']} ")  # ...and says so
    # Every other planned order is there, by digest (what the verification after the rollback checks).
    record = ris.ris_orders_record(ris_orders(listener.db, "list", version="1.0"), {"orders": 5, "sample": []},
                                   expected=[d for d, item in zip(plan["expected"], plan["messages"], strict=True)
                                             if answers[item["key"]] == "AA"])
    assert record["status"] == "passed", record


def test_package_changes_name_what_differs_from_the_pins():
    shown = {"stdout": "dcmtk 3.6.7-9~deb12u4\nlibdcmtk17 3.6.7-9~deb12u4\n"}
    assert ris.ris_package_changes({"dcmtk": "3.6.7-9~deb12u4"}, shown) == []
    assert ris.ris_package_changes({"dcmtk": "3.6.9-1"}, shown) == ["dcmtk=3.6.9-1"]
    assert ris.ris_package_changes({"wlm-extra": "1.0-1"}, shown) == ["wlm-extra=1.0-1"]  # not installed
    assert ris.ris_package_changes({}, {"skipped": True}) == []
