"""Tests for the hl7_check module: main() with module args, real MLLP peers on loopback."""

from __future__ import annotations

import json

import hl7_fixtures
import pydicom
import pytest
import yaml
from hl7_fixtures import (
    ScriptedServer,
    ack_bytes,
    control_id_of,
    free_port,
    load_module,
    run_module,
)

mllp_listener = hl7_fixtures.mllp_listener  # a fixture, used by name
scripted_mllp_server = hl7_fixtures.scripted_mllp_server  # a fixture, used by name
openssl_tls_server = hl7_fixtures.openssl_tls_server  # a fixture, used by name

hl7_check = load_module("hl7_check")


def args_for(peer, **extra):
    out = {"host": "127.0.0.1", "port": peer.port, "timeout": 5}
    out.update(extra)
    return out


def test_order_accepted_by_listener(mllp_listener):
    res = run_module(
        hl7_check,
        args_for(mllp_listener, order={"accession_number": "CHK001", "modality": "CT"}, control_id="CHECK1"),
    )
    assert res["_rc"] == 0, res
    assert res["changed"] is False
    assert res["sent"] is True
    assert res["ack_code"] == "AA"
    assert res["accepted"] is True
    assert res["ack_text"] == "order NW: stored, worklist entry scheduled"
    assert res["control_id"] == "CHECK1"
    assert res["ack_control_id"] == "CHECK1"
    assert res["ack_message_type"] == "ACK^O01^ACK"
    assert res["message_type"] == "ORM^O01^ORM_O01"
    assert res["errors"] == []
    assert res["latency_ms"] > 0
    assert res["connect_ms"] >= 0
    assert res["ack_message"].split("\r")[1].startswith("MSA|AA|CHECK1")
    assert (mllp_listener.dir / "CHK001.wl").exists()


def test_sent_message_is_masked(mllp_listener):
    res = run_module(hl7_check, args_for(mllp_listener, message_type="ADT^A01", order={"patient_id": "SYNSECRET1"}))
    assert res["_rc"] == 0, res
    assert "SYNSECRET1" not in res["sent_message"]
    assert "ZZTEST" not in res["sent_message"]
    assert "PID|1||***||***" in res["sent_message"]
    assert "SYNSECRET1" not in mllp_listener.log_text()


def test_cancel_removes_entry(mllp_listener):
    assert run_module(hl7_check, args_for(mllp_listener, order={"accession_number": "CHK002"}))["_rc"] == 0
    assert (mllp_listener.dir / "CHK002.wl").exists()
    res = run_module(hl7_check, args_for(mllp_listener, order={"control": "CA", "accession_number": "CHK002"}))
    assert res["_rc"] == 0, res
    assert "removed" in res["ack_text"]
    assert not (mllp_listener.dir / "CHK002.wl").exists()


def test_expected_ack_mismatch_fails_with_errors(mllp_listener):
    raw = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|RAW1|P|2.5.1\rPID|1||X"
    res = run_module(hl7_check, args_for(mllp_listener, message_type="raw", raw_message=raw))
    assert res["_rc"] == 1
    assert res["failed"] is True
    assert res["ack_code"] == "AR"
    assert res["accepted"] is False
    assert "expected AA" in res["msg"] and "answered AR" in res["msg"]
    assert res["errors"][0]["code"] == "200"
    assert res["errors"][0]["location"] == "MSH^1^9"
    assert res["control_id"] == "RAW1"


def test_expected_ack_ar_passes(mllp_listener):
    raw = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|RAW2|P|2.5.1"
    res = run_module(
        hl7_check, args_for(mllp_listener, message_type="raw", raw_message=raw, expected_ack="AR", control_id="OVR1")
    )
    assert res["_rc"] == 0, res
    assert res["control_id"] == "OVR1"
    assert res["ack_control_id"] == "OVR1"


def test_check_mode_does_not_send(scripted_mllp_server):
    res = run_module(hl7_check, args_for(scripted_mllp_server), check_mode=True)
    assert res["_rc"] == 0, res
    assert res["sent"] is False
    assert "check mode" in res["msg"]
    assert "ack_code" not in res
    assert res["sent_message"].startswith("MSH|")
    assert scripted_mllp_server.requests == []


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"port": 0}, "port must be an integer from 1 to 65535"),
        ({"port": 70000}, "port must be an integer from 1 to 65535"),
        ({"host": " "}, "host must be"),
        ({"message_type": "ORU^R01"}, "value of message_type must be one of"),
        ({"message_type": "raw"}, "raw_message"),
        ({"order": {"accession_number": "bad/acc"}}, "order.accession_number"),
    ],
)
def test_validation_before_network(scripted_mllp_server, bad, fragment):
    args = args_for(scripted_mllp_server)
    args.update(bad)
    res = run_module(hl7_check, args)
    assert res["_rc"] == 1
    assert fragment in res["msg"]
    assert res.get("sent", False) is False
    assert scripted_mllp_server.requests == []


def test_timeout_is_clear_error(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: None
    res = run_module(hl7_check, args_for(scripted_mllp_server, timeout=0.5))
    assert res["_rc"] == 1
    assert res["error_kind"] == "timeout"
    assert f"no ACK from 127.0.0.1:{scripted_mllp_server.port} within 0.5 s" in res["msg"]
    assert res["sent"] is True


def test_refused_is_clear_error():
    port = free_port()
    res = run_module(hl7_check, {"host": "127.0.0.1", "port": port, "timeout": 2})
    assert res["_rc"] == 1
    assert res["error_kind"] == "refused"
    assert res["sent"] is False
    assert "connection refused" in res["msg"]


def test_malformed_ack_is_clear_error(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: b"\x0bMSH|^~\\&|P|P|C|C|2024||ACK|1|P|2.5\x1c\x0d"
    res = run_module(hl7_check, args_for(scripted_mllp_server))
    assert res["_rc"] == 1
    assert res["error_kind"] == "ack"
    assert "no MSA segment" in res["msg"]


def test_control_id_mismatch_reports_ack(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: ack_bytes("AA", "NOT-" + control_id_of(req))
    res = run_module(hl7_check, args_for(scripted_mllp_server, control_id="CID1"))
    assert res["_rc"] == 1
    assert res["error_kind"] == "control_id"
    assert res["ack_control_id"] == "NOT-CID1"
    assert res["latency_ms"] > 0


def test_ae_with_err_text(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: ack_bytes(
        "AE", control_id_of(req), "", ["ERR||PID^1^3|101^Patient id missing^HL70357|E"]
    )
    res = run_module(hl7_check, args_for(scripted_mllp_server, expected_ack="AE"))
    assert res["_rc"] == 0, res
    assert res["ack_text"] == "Patient id missing"
    assert res["errors"][0]["severity"] == "E"


def test_return_keys_are_documented_and_tested():
    documented = set(yaml.safe_load(hl7_check.RETURN))
    tested = {
        "sent", "message_type", "control_id", "sent_message", "ack_code", "ack_text", "ack_control_id",
        "ack_message_type", "accepted", "errors", "ack_message", "latency_ms", "connect_ms", "error_kind",
    }  # fmt: skip
    assert documented == tested


# ------------------------------------------------ hardening: inputs, PHI, escaping, transport


@pytest.mark.parametrize(
    "host, fragment",
    [
        ("a" * 64 + ".example.org", "at most 63"),  # was a traceback: UnicodeError: label too long
        ("äöüéèàç" * 10 + ".example.org", "internationalised host name"),
        ("ris1.example.org:2575", "carries a port"),
        ("http://ris1.example.org:2575/", "not a URL"),
        ("ris1..example.org", "empty part"),
    ],
)
def test_bad_host_fails_cleanly_before_network(host, fragment):
    res = run_module(hl7_check, {"host": host, "port": free_port(), "timeout": 1})
    assert res["_rc"] == 1
    assert res["msg"].startswith("host ") and fragment in res["msg"]
    assert "error_kind" not in res  # a validation error, before any network use
    assert res["sent"] is False


RAW_WITH_UMLAUT = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|UML1|P|2.5.1\rPID|1||SYNUML||MÜLLER^ANNA||19700101|O"


@pytest.mark.parametrize("check_mode", [False, True])
def test_character_the_encoding_lacks_fails_cleanly_before_network(scripted_mllp_server, check_mode):
    scripted_mllp_server.responder = lambda req: ack_bytes("AA", control_id_of(req))
    args = args_for(scripted_mllp_server, message_type="raw", raw_message=RAW_WITH_UMLAUT, encoding="ascii")
    res = run_module(hl7_check, args, check_mode=check_mode)  # was a traceback: UnicodeEncodeError
    assert res["_rc"] == 1
    assert "encoding 'ascii' cannot represent" in res["msg"] and "PID-5" in res["msg"]
    assert "MÜLLER" not in json.dumps(res, ensure_ascii=False)
    assert res["sent"] is False
    assert scripted_mllp_server.requests == []
    # latin-1 can carry it: sent, and the bytes on the wire are latin-1
    res = run_module(hl7_check, dict(args, encoding="latin-1"), check_mode=check_mode)
    assert res["_rc"] == 0, res
    assert res["sent"] is not check_mode
    if not check_mode:
        assert "MÜLLER".encode("latin-1") in scripted_mllp_server.requests[0]


@pytest.mark.parametrize("when", ["20241399", "202402301200", "2024010125"])
def test_impossible_scheduled_date_fails_before_network(scripted_mllp_server, when):
    res = run_module(hl7_check, args_for(scripted_mllp_server, order={"scheduled_datetime": when}))
    assert res["_rc"] == 1
    assert "order.scheduled_datetime must be a real date and time" in res["msg"]
    assert scripted_mllp_server.requests == []


@pytest.mark.parametrize(
    "args, secrets",
    [
        ({"message_type": "raw", "raw_message": "PID|1||PAT123||THOMPSON^SARAH"}, ["PAT123", "THOMPSON", "SARAH"]),
        (
            {"message_type": "raw", "raw_message": "MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5\rnote THOMPSON^SARAH"},
            ["THOMPSON", "SARAH"],
        ),
        ({"order": {"patient_id": "THOMPSON/SARAH"}}, ["THOMPSON", "SARAH"]),
        ({"order": {"patient_id": "SYNSECRET7", "scheduled_datetime": "20241399"}}, ["SYNSECRET7"]),
    ],
)
def test_failures_carry_no_patient_data(scripted_mllp_server, args, secrets):
    res = run_module(hl7_check, args_for(scripted_mllp_server, **args))
    assert res["_rc"] == 1
    text = json.dumps(res)  # the message, and everything else returned (invocation included)
    for secret in secrets:
        assert secret not in text
    assert scripted_mllp_server.requests == []


def test_success_carries_no_patient_data(mllp_listener):
    raw = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|PHI1|P|2.5.1\rPID|1||PAT123^^^H||THOMPSON^SARAH||19800101|F"
    res = run_module(hl7_check, args_for(mllp_listener, message_type="raw", raw_message=raw))
    assert res["_rc"] == 0, res
    text = json.dumps(res)
    for secret in ("PAT123", "THOMPSON", "SARAH", "19800101", "TH***", "PA***"):
        assert secret not in text
    assert "PID|1||***||***||***|F" in res["sent_message"]


def test_delimiters_in_order_fields_reach_the_worklist_unshifted(mllp_listener):
    order = {
        "accession_number": "CHKESC1",
        "station_aetitle": "CT|01",
        "modality": "MR",
        "procedure_description": "HEAD & NECK | W/O ~ CONTRAST ^ 2",
        "scheduled_datetime": "202403041530",
    }
    res = run_module(hl7_check, args_for(mllp_listener, order=order))
    assert res["_rc"] == 0, res
    assert "|CT\\F\\01|" in res["sent_message"]
    ds = pydicom.dcmread(mllp_listener.dir / "CHKESC1.wl")
    sps = ds.ScheduledProcedureStepSequence[0]
    assert sps.ScheduledStationAETitle == "CT|01"
    assert sps.Modality == "MR"
    assert sps.ScheduledProcedureStepStartDate == "20240304"
    assert sps.ScheduledProcedureStepStartTime == "153000"
    assert ds.RequestedProcedureDescription == "HEAD & NECK | W/O ~ CONTRAST ^ 2"


def test_reset_after_sending_reports_sent(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: ScriptedServer.RESET
    res = run_module(hl7_check, args_for(scripted_mllp_server, timeout=1))
    assert res["_rc"] == 1
    assert res["error_kind"] == "connection"
    assert "reset the connection after the message went out" in res["msg"]
    assert res["sent"] is True


def test_plain_mllp_against_tls_port_says_so(openssl_tls_server):
    res = run_module(hl7_check, {"host": "127.0.0.1", "port": openssl_tls_server.port, "timeout": 5})
    assert res["_rc"] == 1
    assert res["error_kind"] == "tls"
    assert "the peer speaks TLS" in res["msg"]
    assert res["sent"] is True


@pytest.mark.parametrize("order", [0, 1, True, [1]])
def test_order_of_wrong_shape_is_clean_failure(order):
    res = run_module(hl7_check, {"host": "127.0.0.1", "order": order}, check_mode=True)
    assert res["_rc"] == 1
    assert "order must be a dictionary" in res["msg"]


def test_station_ae_alias(mllp_listener):
    res = run_module(hl7_check, args_for(mllp_listener, order={"accession_number": "CHK003", "station_ae": "CT09"}))
    assert res["_rc"] == 0, res
    assert "|CT09|" in res["sent_message"]
