"""Tests for the hl7_deliver module: main() with module args, against the real cu-ris listener (1.1 and 1.0),
a scripted MLLP peer for the transport cases, and the order database read independently (sqlite3, ris-orders)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import hl7_fixtures
import pytest
import yaml
from hl7_fixtures import (
    DUMP2DCM,
    ListenerProcess,
    ScriptedServer,
    ack_bytes,
    control_id_of,
    free_port,
    load_module,
    run_module,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

mllp_listener = hl7_fixtures.mllp_listener  # a fixture, used by name: the cu-ris 1.1 listener
scripted_mllp_server = hl7_fixtures.scripted_mllp_server  # a fixture, used by name

hl7_deliver = load_module("hl7_deliver")
hl7_client = hl7_fixtures.hl7_client()

PATIENT_ID = "SYNSECRET42"  # synthetic, but treated as patient data: it must never come back
SECRETS = (PATIENT_ID, "ZZTEST", "SYNTHETIC", "19700101")


@pytest.fixture
def ris_1_0(tmp_path):
    """The cu-ris 1.0 listener (NW and CA only: XO is answered AR)."""
    if not os.access(DUMP2DCM, os.X_OK):
        pytest.fail("DCMTK dump2dcm is not installed: run `make deps` (apt-get install dcmtk)")
    listener = ListenerProcess(tmp_path, version="1.0")
    yield listener
    listener.stop()


def order(accession, control_id, control="NW", patient_id=PATIENT_ID):
    """An ORM^O01 for the synthetic patient ZZTEST^SYNTHETIC (control NW, CA or XO)."""
    built = "NW" if control == "XO" else control
    text = hl7_client.build_message(
        {
            "message_type": "ORM^O01",
            "order": {"control": built, "accession_number": accession, "patient_id": patient_id, "modality": "CT"},
        },
        control_id,
    )
    return text.replace(f"ORC|{built}|", f"ORC|{control}|") if control != built else text


def entry(key, message):
    return {"key": key, "message": message}


def args_for(peer, **extra):
    out = {"host": "127.0.0.1", "port": peer.port, "timeout": 5, "retry_delay": 0.05}
    out.update(extra)
    return out


def write_src(tmp_path, entries, name="kept.json"):
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return str(path)


def db_orders(listener):
    """accession -> row of the listener's order database, read on a connection of our own (read-only)."""
    conn = sqlite3.connect(f"file:{listener.db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return {row["accession"]: dict(row) for row in conn.execute("SELECT * FROM orders ORDER BY id")}
    finally:
        conn.close()


def ris_orders(listener, version, *command):
    """The release's own reader, bin/ris-orders."""
    release = hl7_fixtures.release_root(version)
    proc = subprocess.run(
        [sys.executable, str(release / "bin" / "ris-orders"), "--db", str(listener.db), *command],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return json.loads(proc.stdout)


def assert_no_message_text(result, messages=()):
    text = json.dumps(result)
    for secret in SECRETS:
        assert secret not in text, secret
    for message in messages:
        for segment in message.split("\r")[1:]:
            assert segment not in text


# ------------------------------------------------------------------ delivery to the real RIS


def test_delivers_orders_in_order_each_proven_by_its_ack(mllp_listener, tmp_path):
    messages = [order(f"DLV00{i}", f"DLVCID{i}") for i in range(1, 4)]
    entries = [entry(f"order {i}", m) for i, m in enumerate(messages, start=1)]
    res = run_module(hl7_deliver, args_for(mllp_listener, src=write_src(tmp_path, entries)))
    assert res["_rc"] == 0, res
    assert res["changed"] is True
    assert res["count"] == 3
    assert res["not_delivered"] == []
    assert [d["key"] for d in res["delivered"]] == ["order 1", "order 2", "order 3"]
    assert [d["index"] for d in res["delivered"]] == [0, 1, 2]
    assert [d["control_id"] for d in res["delivered"]] == ["DLVCID1", "DLVCID2", "DLVCID3"]
    assert all(d["ack"] == "AA" and d["attempts"] == 1 and d["latency_ms"] > 0 for d in res["delivered"])
    assert res["msg"] == f"3 message(s) delivered to 127.0.0.1:{mllp_listener.port}"
    # the database, read independently: every accession, stored from the message sent, in order
    stored = db_orders(mllp_listener)
    assert list(stored) == ["DLV001", "DLV002", "DLV003"]
    for i, accession in enumerate(stored, start=1):
        assert stored[accession]["status"] == "scheduled"
        assert stored[accession]["control_id"] == f"DLVCID{i}"
        assert stored[accession]["patient_id"] == PATIENT_ID
        assert stored[accession]["message"] == messages[i - 1]
        assert (mllp_listener.dir / f"{accession}.wl").exists()
    listed = ris_orders(mllp_listener, "1.1", "list")
    assert [row["accession"] for row in listed] == ["DLV001", "DLV002", "DLV003"]
    assert ris_orders(mllp_listener, "1.1", "count")["scheduled"] == 3
    assert_no_message_text(res, messages)
    assert PATIENT_ID not in mllp_listener.log_text()


def test_inline_messages_and_lf_segment_ends(mllp_listener):
    lf = order("DLVLF1", "DLVLFCID").replace("\r", "\n") + "\n"
    crlf = order("DLVLF2", "DLVLFCID2").replace("\r", "\r\n")
    res = run_module(hl7_deliver, args_for(mllp_listener, messages=[entry("lf", lf), entry("crlf", crlf)]))
    assert res["_rc"] == 0, res
    assert [d["key"] for d in res["delivered"]] == ["lf", "crlf"]  # keys are shown although messages is no_log
    stored = db_orders(mllp_listener)
    assert stored["DLVLF1"]["message"] == lf.strip().replace("\n", "\r")  # sent as CR-joined segments
    assert "\n" not in stored["DLVLF2"]["message"]
    assert res["invocation"]["module_args"]["messages"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert_no_message_text(res, [lf, crlf])


def test_retransmission_of_the_same_message_is_aa_again(mllp_listener, tmp_path):
    message = order("DLVRTX1", "DLVRTXCID")
    src = write_src(tmp_path, [entry("first", message), entry("again in the same run", message)])
    res = run_module(hl7_deliver, args_for(mllp_listener, src=src))
    assert res["_rc"] == 0, res
    assert [d["ack"] for d in res["delivered"]] == ["AA", "AA"]
    # a second run with the same src: every message again, all AA, nothing changes in the RIS
    again = run_module(hl7_deliver, args_for(mllp_listener, src=src))
    assert again["_rc"] == 0, again
    assert [d["ack"] for d in again["delivered"]] == ["AA", "AA"]
    stored = db_orders(mllp_listener)
    assert list(stored) == ["DLVRTX1"]
    assert stored["DLVRTX1"]["revision"] == 1
    conn = sqlite3.connect(f"file:{mllp_listener.db}?mode=ro", uri=True)
    try:
        events = conn.execute("SELECT control, control_id FROM order_events WHERE accession = 'DLVRTX1'").fetchall()
    finally:
        conn.close()
    assert events == [("NW", "DLVRTXCID")]  # one change; the three others were retransmissions
    assert mllp_listener.log_text().count("a retransmission of DLVRTXCID") == 3


def test_xo_to_release_1_0_is_ar_and_the_others_are_still_delivered(ris_1_0, tmp_path):
    messages = [order("DLVA1", "DLVCA1"), order("DLVB1", "DLVCB1", control="XO"), order("DLVC1", "DLVCC1")]
    src = write_src(tmp_path, [entry("order A", messages[0]), entry("order B", messages[1]),
                               entry("order C", messages[2])])  # fmt: skip
    res = run_module(hl7_deliver, args_for(ris_1_0, src=src))
    assert res["_rc"] == 1
    assert res["failed"] is True
    assert res["changed"] is True  # A and C are in the RIS
    assert [d["key"] for d in res["delivered"]] == ["order A", "order C"]
    assert res["not_delivered"] == [
        {
            "index": 1,
            "key": "order B",
            "control_id": "DLVCB1",
            "ack": "AR",
            "reason": "unexpected_ack",
            "text": "unsupported order control XO (this release handles NW and CA)",
            "attempts": 1,  # an answer is final: not sent again
        }
    ]
    assert res["msg"].startswith(f"1 of 3 message(s) were NOT delivered to 127.0.0.1:{ris_1_0.port}: order B. ")
    assert "answered AR: unsupported order control XO" in res["msg"]
    assert f". They are still in src {src}: fix the cause" in res["msg"]
    assert list(db_orders(ris_1_0)) == ["DLVA1", "DLVC1"]
    assert [row["accession"] for row in ris_orders(ris_1_0, "1.0", "list")] == ["DLVA1", "DLVC1"]
    assert_no_message_text(res, messages)


def test_stop_on_failure_sends_nothing_after_the_first_failure(ris_1_0):
    messages = [order("DLVS1", "DLVCS1"), order("DLVS2", "DLVCS2", control="XO"), order("DLVS3", "DLVCS3")]
    entries = [entry(f"s{i}", m) for i, m in enumerate(messages, start=1)]
    res = run_module(hl7_deliver, args_for(ris_1_0, messages=entries, stop_on_failure=True))
    assert res["_rc"] == 1
    assert [d["key"] for d in res["delivered"]] == ["s1"]
    assert [(n["key"], n["reason"], n["ack"], n["attempts"]) for n in res["not_delivered"]] == [
        ("s2", "unexpected_ack", "AR", 1),
        ("s3", "not_sent", None, 0),
    ]
    assert "2 of 3 message(s) were NOT delivered" in res["msg"] and ": s2, s3. " in res["msg"]
    assert "They are still in the task's messages: " in res["msg"]
    assert list(db_orders(ris_1_0)) == ["DLVS1"]


def test_expected_ack_list(ris_1_0):
    xo = order("DLVX1", "DLVCX1", control="XO")
    res = run_module(hl7_deliver, args_for(ris_1_0, messages=[entry("xo", xo)], expected_ack=["AA", "AR"]))
    assert res["_rc"] == 0, res
    assert res["delivered"][0]["ack"] == "AR"


# ------------------------------------------------------------------ nothing sent: validation, check mode


def test_invalid_message_fails_before_anything_is_sent(mllp_listener, tmp_path):
    bad = order("DLVBAD", "")  # MSH-10 empty
    entries = [
        entry("good 1", order("DLVOK1", "DLVCOK1")),
        entry("no control id", bad),
        entry("good 2", order("DLVOK2", "DLVCOK2")),
        entry("not HL7", f"PID|1||{PATIENT_ID}||ZZTEST^SYNTHETIC"),
    ]
    src = write_src(tmp_path, entries)
    res = run_module(hl7_deliver, args_for(mllp_listener, src=src))
    assert res["_rc"] == 1
    assert res["changed"] is False
    assert res["delivered"] == [] and res["not_delivered"] == []
    assert res["msg"].startswith(f"2 of 4 message(s) in src {src} are not valid; nothing was sent: ")
    assert "[1] (key no control id): the message MSH-10 (message control id) is empty" in res["msg"]
    assert "[3] (key not HL7): the message must start with an MSH segment" in res["msg"]
    assert [(i["index"], i["key"]) for i in res["invalid"]] == [(1, "no control id"), (3, "not HL7")]
    assert_no_message_text(res, [e["message"] for e in entries])
    assert db_orders(mllp_listener) == {}
    assert ris_orders(mllp_listener, "1.1", "count")["orders"] == 0
    assert "control_id=" not in mllp_listener.log_text()  # the listener never got a message


@pytest.mark.parametrize(
    "bad_entry, fragment",
    [
        ("just text", "an entry must be an object with key and message, got str"),
        ({"message": "MSH|x"}, "key must be a string of 1 to 128 printable characters, got NoneType"),
        ({"key": "", "message": "MSH|x"}, "key must be 1 to 128 printable characters"),
        ({"key": "k" * 129, "message": "MSH|x"}, "key must be 1 to 128 printable characters"),
        ({"key": "line\nbreak", "message": "MSH|x"}, "key must be 1 to 128 printable characters"),
        ({"key": "k"}, "message must be the HL7 v2 message text, got NoneType"),
        ({"key": "k", "message": "  "}, "message must be the HL7 v2 message text, got an empty string"),
        ({"key": "k", "message": "MSH|^~\\&|A|B"}, "MSH segment needs at least 12 fields"),
        ({"key": "k", "message": "MSH|^~\\&|A|B|C|D|2024||ORM^O01|C1|P|2.5\rnot a segment"}, "line 2 is not"),
        ({"key": "k", "message": "MSH|^~\\&|A|B|C|D|2024||ORM^O01|   |P|2.5"}, "MSH-10 (message control id)"),
    ],
)
def test_invalid_entries_are_named_before_network(scripted_mllp_server, tmp_path, bad_entry, fragment):
    src = write_src(tmp_path, [entry("fine", order("DLVF1", "DLVCF1")), bad_entry])
    res = run_module(hl7_deliver, args_for(scripted_mllp_server, src=src))
    assert res["_rc"] == 1
    assert f"1 of 2 message(s) in src {src} are not valid; nothing was sent: [1]" in res["msg"]
    assert fragment in res["msg"]
    assert res["invalid"][0]["index"] == 1
    assert scripted_mllp_server.requests == []


def test_character_the_encoding_lacks_is_invalid_before_network(scripted_mllp_server):
    message = order("DLVUML", "DLVCUML").replace("ZZTEST^SYNTHETIC", "ZZTEST^MÜLLER")
    res = run_module(hl7_deliver, args_for(scripted_mllp_server, messages=[entry("umlaut", message)], encoding="ascii"))
    assert res["_rc"] == 1
    assert "encoding 'ascii' cannot represent" in res["msg"] and "PID-5" in res["msg"]
    assert "MÜLLER" not in json.dumps(res, ensure_ascii=False)
    assert scripted_mllp_server.requests == []


def test_check_mode_validates_and_sends_nothing(mllp_listener, tmp_path):
    entries = [entry("c1", order("DLVCHK1", "DLVCCHK1")), entry("c2", order("DLVCHK2", "DLVCCHK2"))]
    res = run_module(hl7_deliver, args_for(mllp_listener, src=write_src(tmp_path, entries)), check_mode=True)
    assert res["_rc"] == 0, res
    assert res["would_deliver"] == ["c1", "c2"]
    assert res["delivered"] == [] and res["not_delivered"] == []
    assert res["count"] == 2
    assert res["changed"] is True  # it would send them
    assert "check mode" in res["msg"] and "none sent" in res["msg"]
    assert db_orders(mllp_listener) == {}
    assert "control_id=" not in mllp_listener.log_text()
    assert_no_message_text(res, [e["message"] for e in entries])
    # an invalid message fails in check mode too
    bad = run_module(hl7_deliver, args_for(mllp_listener, messages=[entry("x", "PID|1")]), check_mode=True)
    assert bad["_rc"] == 1 and "not valid" in bad["msg"]


def test_empty_list_delivers_nothing(scripted_mllp_server):
    res = run_module(hl7_deliver, args_for(scripted_mllp_server, messages=[]))
    assert res["_rc"] == 0, res
    assert res["changed"] is False and res["count"] == 0
    assert scripted_mllp_server.requests == []


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        ('{"key": "a", "message": "b"}', "must be a list of {key, message} objects, got dict"),
        (b"\xff\xfe[]", "is not UTF-8 text"),
    ],
)
def test_src_that_cannot_be_used(tmp_path, scripted_mllp_server, content, fragment):
    path = tmp_path / "kept.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    res = run_module(hl7_deliver, args_for(scripted_mllp_server, src=str(path)))
    assert res["_rc"] == 1
    assert res["msg"].startswith(f"src {path} ") and fragment in res["msg"]
    assert scripted_mllp_server.requests == []


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"port": 0}, "port must be an integer from 1 to 65535"),
        ({"port": "inf"}, "unable to convert to whole_number"),
        ({"port": 1e400}, "unable to convert to whole_number"),
        ({"host": "http://ris1:2575/"}, "host "),
        ({"timeout": "nan"}, "timeout must be a number of seconds"),
        ({"timeout": 10**400}, "timeout must be a number of seconds, got an integer of 401 digits"),
        ({"encoding": "utf-16"}, "cannot carry MLLP"),
        ({"expected_ack": []}, "expected_ack must name at least one ACK code"),
        ({"expected_ack": ["XX"]}, "expected_ack"),
        ({"retries": -1}, "retries must be 0 to 100"),
        ({"retries": "inf"}, "unable to convert to whole_number"),
        ({"retry_delay": "inf"}, "retry_delay must be 0 to 300 seconds"),
        ({"retry_delay": float("nan")}, "retry_delay must be 0 to 300 seconds"),
        ({"src": "/nonexistent.json"}, "parameters are mutually exclusive: src|messages"),
        ({"messages": None}, "one of the following is required: src, messages"),
        ({"messages": "text"}, "messages"),
        ({"messages": [1]}, "messages"),
    ],
)
def test_options_are_validated_before_network(scripted_mllp_server, bad, fragment):
    # (a key is scrubbed from Ansible's own argument errors, which come before the module can say it is no secret)
    args = args_for(scripted_mllp_server, messages=[entry("order-key-1", order("DLVO1", "DLVCO1"))])
    args.update(bad)
    args = {k: v for k, v in args.items() if v is not None}
    res = run_module(hl7_deliver, args)
    assert res["_rc"] == 1
    assert res.get("failed") is True
    assert fragment in res["msg"], res["msg"]
    assert "Traceback" not in res["msg"]
    assert scripted_mllp_server.requests == []


# ------------------------------------------------------------------ transport: retries, no answer, odd answers


def test_nothing_listening_is_retried_then_not_delivered_refused():
    port = free_port()
    messages = [entry("r1", order("DLVR1", "DLVCR1")), entry("r2", order("DLVR2", "DLVCR2"))]
    started = time.monotonic()
    res = run_module(
        hl7_deliver,
        {"host": "127.0.0.1", "port": port, "timeout": 2, "messages": messages, "retries": 2, "retry_delay": 0.1},
    )
    elapsed = time.monotonic() - started
    assert res["_rc"] == 1
    assert res["changed"] is False
    assert res["delivered"] == []
    assert [(n["key"], n["reason"], n["ack"], n["attempts"]) for n in res["not_delivered"]] == [
        ("r1", "refused", None, 3),
        ("r2", "refused", None, 3),  # each message is independent: the second was tried too
    ]
    assert "connection refused" in res["not_delivered"][0]["text"]
    assert ". First: r1: connection refused by 127.0.0.1:" in res["msg"]
    assert elapsed >= 4 * 0.1  # two waits per message
    assert res["msg"].startswith(f"2 of 2 message(s) were NOT delivered to 127.0.0.1:{port}: r1, r2. First: r1: ")
    assert_no_message_text(res, [m["message"] for m in messages])


def test_no_answer_is_retried_and_then_delivered(scripted_mllp_server):
    answers = iter([ScriptedServer.CLOSE, ScriptedServer.RESET])

    def responder(req):
        if not req.startswith(b"MSH|"):  # the TLS probe that follows a connection closed without an answer
            return ScriptedServer.CLOSE
        return next(answers, None) or ack_bytes("AA", control_id_of(req))

    scripted_mllp_server.responder = responder
    args = args_for(scripted_mllp_server, messages=[entry("k", order("DLVN1", "DLVCN1"))], timeout=0.5)
    res = run_module(hl7_deliver, args)
    assert res["_rc"] == 0, res
    assert res["delivered"][0]["attempts"] == 3
    sent = [r for r in scripted_mllp_server.requests if r.startswith(b"MSH|")]
    assert len(sent) == 3
    assert len(set(sent)) == 1  # the same bytes each time (a retransmission)


def test_timeout_is_retried(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: None  # silent
    args = args_for(scripted_mllp_server, messages=[entry("k", order("DLVT1", "DLVCT1"))], timeout=0.3, retries=1)
    res = run_module(hl7_deliver, args)
    assert res["_rc"] == 1
    assert res["not_delivered"][0]["reason"] == "timeout"
    assert res["not_delivered"][0]["attempts"] == 2
    assert len(scripted_mllp_server.requests) == 2


def test_an_answer_is_final(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: ack_bytes(
        "AE",
        control_id_of(req),
        "",
        [f"ERR||PID^1^3|204^unknown patient {PATIENT_ID} (ZZTEST\\S\\SYNTHETIC)^HL70357|E"],
    )
    res = run_module(hl7_deliver, args_for(scripted_mllp_server, messages=[entry("k", order("DLVE1", "DLVCE1"))]))
    assert res["_rc"] == 1
    failed = res["not_delivered"][0]
    assert (failed["ack"], failed["reason"], failed["attempts"]) == ("AE", "unexpected_ack", 1)
    assert failed["text"] == "unknown patient *** (***)"  # the ERR text, the message's patient values masked
    assert len(scripted_mllp_server.requests) == 1
    assert "(expected AA)" in res["msg"]
    assert_no_message_text(res)


def test_control_id_mismatch_is_not_delivered(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: ack_bytes("AA", "OTHER" + control_id_of(req))
    res = run_module(hl7_deliver, args_for(scripted_mllp_server, messages=[entry("k", order("DLVM1", "DLVCM1"))]))
    assert res["_rc"] == 1
    failed = res["not_delivered"][0]
    assert (failed["ack"], failed["reason"], failed["attempts"]) == ("AA", "control_id", 1)
    assert "ACK control id mismatch" in failed["text"]


def test_malformed_ack_is_not_delivered(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: b"\x0bMSH|^~\\&|P|P|C|C|2024||ACK|1|P|2.5\x1c\x0d"
    res = run_module(hl7_deliver, args_for(scripted_mllp_server, messages=[entry("k", order("DLVK1", "DLVCK1"))]))
    assert res["_rc"] == 1
    assert res["not_delivered"][0]["reason"] == "ack"
    assert res["not_delivered"][0]["attempts"] == 1


def test_many_failures_are_named_in_short(tmp_path):
    port = free_port()
    messages = [entry(f"order {i} ({'a' * 16})", order(f"DLVMANY{i}", f"DLVCMANY{i}")) for i in range(40)]
    res = run_module(
        hl7_deliver,
        {"host": "127.0.0.1", "port": port, "src": write_src(tmp_path, messages), "retries": 0, "timeout": 1},
    )
    assert res["_rc"] == 1
    assert len(res["not_delivered"]) == 40
    assert "40 of 40 message(s) were NOT delivered" in res["msg"]
    assert " more. First: order 0 " in res["msg"]
    assert len(res["msg"]) < 1200


# ------------------------------------------------------------------ documentation


def test_return_keys_are_documented_and_tested():
    documented = yaml.safe_load(hl7_deliver.RETURN)
    assert set(documented) == {"count", "delivered", "not_delivered", "would_deliver", "invalid"}
    assert set(documented["delivered"]["contains"]) == {"index", "key", "control_id", "ack", "latency_ms", "attempts"}
    assert set(documented["not_delivered"]["contains"]) == {
        "index", "key", "control_id", "ack", "reason", "text", "attempts",
    }  # fmt: skip
    assert set(documented["invalid"]["contains"]) == {"index", "key", "error"}


def test_documented_options_match_the_argument_spec():
    doc = yaml.safe_load(hl7_deliver.DOCUMENTATION)
    documented = dict(doc["options"])
    assert doc["extends_documentation_fragment"] == ["hl7_connection"]
    fragment = (Path(__file__).resolve().parents[2] / "plugins" / "doc_fragments" / "hl7_connection.py").read_text()
    documented.update(yaml.safe_load(fragment.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])["options"])
    spec = hl7_deliver.argument_spec()
    assert set(documented) == set(spec)
    for name, option in documented.items():
        assert option.get("default") == spec[name].get("default"), name
    assert spec["messages"]["no_log"] is True


# ------------------------------------------------------------------ random arguments: a clean result, never a traceback

CLOSED_PORT = free_port()
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=20)
)
_any = st.one_of(_scalars, st.lists(_scalars, max_size=3), st.dictionaries(st.text(max_size=8), _scalars, max_size=3))
_hl7ish = st.text(alphabet="MSHPIDORCB|^~\\&\r\n 0123456789.", max_size=80)
_entries = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"key": st.one_of(st.text(min_size=1, max_size=12), _scalars),
             "message": st.one_of(_hl7ish.map(lambda s: "MSH|^~\\&|" + s), _hl7ish, _scalars)}
        ),
        _any,
    ),
    max_size=4,
)  # fmt: skip


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    args=st.fixed_dictionaries(
        {"messages": _entries},
        optional={
            "port": st.one_of(st.sampled_from(["inf", "nan", 1e400, "0", "65536", 2**64]), _any),
            "timeout": st.one_of(st.sampled_from(["inf", "nan", 1e400, -1, 0, 3601]), _any),
            "encoding": st.one_of(st.sampled_from(["utf-8", "utf-16", "idna", "bogus", "ascii"]), _any),
            "expected_ack": st.one_of(st.lists(st.sampled_from(["AA", "AR", "XX"]), max_size=3), _any),
            "stop_on_failure": _any,
            "retries": st.one_of(st.sampled_from(["inf", 1e400, -1, 101, 0]), _any),
            "retry_delay": st.one_of(st.sampled_from(["inf", "nan", -1, 301, 0]), _any),
            "unknown_option": _any,
        },
    ),
    check_mode=st.booleans(),
)
def test_random_arguments_end_cleanly(args, check_mode):
    args = dict(args, host="127.0.0.1", port=args.get("port", CLOSED_PORT))
    if not check_mode:  # against a closed loopback port: quick, and never a success when something is sent
        args.update(port=CLOSED_PORT, retries=0, timeout=1)
    res = run_module(hl7_deliver, args, check_mode=check_mode)
    assert res["_rc"] in (0, 1), res
    if res["_rc"] == 1:
        assert res.get("failed") is True and isinstance(res.get("msg"), str) and res["msg"]
        assert "Traceback" not in res["msg"]
    else:
        assert res.get("delivered") == []  # nothing listens there, and check mode sends nothing
