"""Tests for plugins/module_utils/hl7_client.py against real TCP peers on loopback."""

from __future__ import annotations

import socket
import time

import hl7
import hl7_fixtures
import pytest
from hl7_fixtures import (
    ScriptedServer,
    ack_bytes,
    control_id_of,
    free_port,
    hl7_client,
)

mllp_listener = hl7_fixtures.mllp_listener  # a fixture, used by name
scripted_mllp_server = hl7_fixtures.scripted_mllp_server  # a fixture, used by name
openssl_tls_server = hl7_fixtures.openssl_tls_server  # a fixture, used by name

c = hl7_client()


def order_params(**order):
    return {"host": "127.0.0.1", "port": 2575, "message_type": "ORM^O01", "order": order}


# ----------------------------------------------------------------- building


def test_build_orm_uses_synthetic_patient_and_mapping():
    text = c.build_message(
        order_params(accession_number="ACC42", modality="CT", station_aetitle="CT01", scheduled_datetime="20240102"),
        "CTRL1",
    )
    segs = dict((name, fields) for name, fields in c.split_segments(text))
    assert segs["MSH"][9] == "ORM^O01^ORM_O01"
    assert segs["MSH"][10] == "CTRL1"
    assert segs["PID"][5] == c.SYNTHETIC_PATIENT_NAME
    assert segs["PID"][3].startswith("SYN")
    assert segs["ORC"][1] == "NW"
    assert segs["OBR"][18] == "ACC42"
    assert segs["OBR"][21] == "CT01"
    assert segs["OBR"][24] == "CT"
    assert segs["OBR"][36] == "20240102"


def test_build_adt_a01():
    text = c.build_message({"host": "h", "port": 1, "message_type": "ADT^A01"}, "C2")
    names = [name for name, _ in c.split_segments(text)]
    assert names == ["MSH", "EVN", "PID", "PV1"]
    assert "ADT^A01" in text


def test_raw_message_normalised_and_validated():
    raw = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X9|P|2.5\nPID|1||X\r\n"
    text = c.build_message({"host": "h", "port": 1, "message_type": "raw", "raw_message": raw}, None)
    assert text == "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X9|P|2.5\rPID|1||X"
    assert c.set_control_id(text, "NEW").split("\r")[0].split("|")[9] == "NEW"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("PID|1", "must start with an MSH"),
        ("MSH|^~\\&|A|B", "at least 12 fields"),
        ("MSH|^~\\&|A|B|C|D|2024||ADT^A01||P|2.5", "MSH-10"),
        ("MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5\rhello world", "not an HL7 segment"),
    ],
)
def test_raw_message_errors(raw, fragment):
    with pytest.raises(c.HL7ClientError) as err:
        c.validate_options({"host": "h", "port": 1, "message_type": "raw", "raw_message": raw})
        c.build_message({"host": "h", "port": 1, "message_type": "raw", "raw_message": raw}, None)
    assert fragment in err.value.msg


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"host": "", "port": 1}, "host must be"),
        ({"host": "http://x", "port": 1}, "not a valid host"),
        ({"host": "h", "port": 0}, "port must be an integer from 1 to 65535"),
        ({"host": "h", "port": 65536}, "port must be an integer from 1 to 65535"),
        ({"host": "h", "port": 1, "timeout": 0}, "timeout must be"),
        ({"host": "h", "port": 1, "message_type": "ORU^R01"}, "message_type must be one of"),
        ({"host": "h", "port": 1, "message_type": "raw"}, "needs raw_message"),
        ({"host": "h", "port": 1, "raw_message": "MSH|"}, "only used with message_type=raw"),
        ({"host": "h", "port": 1, "hl7_version": "3.0"}, "hl7_version"),
        ({"host": "h", "port": 1, "encoding": "nope-8"}, "not a known character encoding"),
        ({"host": "h", "port": 1, "control_id": "a|b"}, "control_id must be"),
        ({"host": "h", "port": 1, "order": {"station_aetitle": "X" * 17}}, "station_aetitle"),
        ({"host": "h", "port": 1, "order": {"accession_number": "../../etc"}}, "accession_number"),
        ({"host": "h", "port": 1, "order": {"scheduled_datetime": "tomorrow"}}, "scheduled_datetime"),
        ({"host": "h", "port": 1, "order": {"control": "CA"}}, "needs order.accession_number"),
        # host names: label over 63 characters (was 'UnicodeError: label too long' at connect), URLs, ports
        ({"host": "a" * 64 + ".example.org", "port": 1}, "a part between dots has 64 characters, at most 63"),
        ({"host": "äöüéèàç" * 10 + ".example.org", "port": 1}, "internationalised host name"),
        ({"host": "ris1..example.org", "port": 1}, "empty part"),
        ({"host": "-ris1.example.org", "port": 1}, "does not start or end with '-'"),
        ({"host": "ris1:2575", "port": 1}, "carries a port"),
        ({"host": "[::1]", "port": 1}, "without brackets"),
        ({"host": "1.2.3", "port": 1}, "not a valid IPv4 address"),
        ({"host": ".".join(["x" * 60] * 5), "port": 1}, "304 characters, at most 253"),
        ({"host": "mllp://ris1:2575", "port": 1}, "not a URL"),
        # encodings MLLP cannot carry
        ({"host": "h", "port": 1, "encoding": "utf-16"}, "ASCII-compatible"),
        ({"host": "h", "port": 1, "encoding": "cp037"}, "ASCII-compatible"),
        ({"host": "h", "port": 1, "encoding": "utf-8-sig"}, "ASCII-compatible"),
        ({"host": "h", "port": 1, "encoding": "idna"}, "ASCII-compatible"),
        # dates that are no dates
        ({"host": "h", "port": 1, "order": {"scheduled_datetime": "20241399"}}, "real date and time"),
        ({"host": "h", "port": 1, "order": {"scheduled_datetime": "202402301200"}}, "real date and time"),
        ({"host": "h", "port": 1, "order": {"scheduled_datetime": "202401012400"}}, "real date and time"),
        ({"host": "h", "port": 1, "order": {"scheduled_datetime": "20240101120060"}}, "real date and time"),
        ({"host": "h", "port": 1, "order": {"scheduled_datetime": "00000101"}}, "year from 1900"),
        ({"host": "h", "port": 1, "order": {"station_aetitle": "   "}}, "not all spaces"),
        ({"host": "h", "port": 1, "order": {"procedure_description": "A\nB"}}, "no line breaks"),
    ],
)
def test_validation_errors(params, fragment):
    with pytest.raises(c.HL7ClientError) as err:
        c.validate_options(params)
    assert err.value.kind == "validation"
    assert fragment in err.value.msg


@pytest.mark.parametrize(
    "good, bad",
    [
        ("a" * 63 + ".example", "a" * 64 + ".example"),
        ("bücher.example", "äöüéèàç" * 10 + ".example"),
        ("ris1.example.org.", "ris1.example.org.."),
        ("RIS-01.radiology.example", "-RIS-01.radiology.example"),
        ("win_host.local", "win@host.local"),
        ("127.0.0.1", "127.0.0.1:2575"),
        ("::1", "[::1]"),
        ("fe80::1%lo", "fe80::1::2"),
        ("10.0.0.1", "10.0.1"),
    ],
)
def test_host_validation_boundaries(good, bad):
    c.validate_options({"host": good, "port": 2575})
    with pytest.raises(c.HL7ClientError) as err:
        c.validate_options({"host": bad, "port": 2575})
    assert err.value.msg.startswith("host ")


@pytest.mark.parametrize(
    "good, bad",
    [
        ("20240229", "20230229"),  # leap years
        ("202402291230", "202402291260"),
        ("20241231235959", "20241231235960"),
        ("19000101", "18991231"),
    ],
)
def test_scheduled_datetime_boundaries(good, bad):
    c.validate_options(order_params(scheduled_datetime=good))
    with pytest.raises(c.HL7ClientError, match="order.scheduled_datetime must be a real date"):
        c.validate_options(order_params(scheduled_datetime=bad))


# ------------------------------------------------------------------ escaping


DELIMITED = {
    "station_aetitle": "CT|01^A&B~C",
    "procedure_description": "HEAD & NECK | W/O ~ CONTRAST ^ 2 \\ 3 \\F\\",
    "modality": "CT",
    "accession_number": "ESC001",
    "scheduled_datetime": "20240304153000",
}


def test_built_message_escapes_delimiters_as_python_hl7_reads_them():
    text = c.build_message(order_params(**DELIMITED), "ESC1")
    assert "CT\\F\\01\\S\\A\\T\\B\\R\\C" in text
    parsed = hl7.parse(text)
    assert len(parsed.segment("OBR")) == 37  # OBR-1 .. OBR-36: no field shifted
    assert parsed["OBR.F21"] == DELIMITED["station_aetitle"]
    assert parsed["OBR.F24"] == "CT"
    assert parsed["OBR.F4.R1.C1"] == "CUPG01"
    assert parsed["OBR.F4.R1.C2"] == DELIMITED["procedure_description"]
    assert parsed["OBR.F36"] == "20240304153000"
    assert parsed["OBR.F18"] == "ESC001"
    # and the project's own parser reads the same values back
    segments = c.split_segments(text)
    obr = dict(segments)["OBR"]
    assert c.unescape(obr[21], segments) == DELIMITED["station_aetitle"]
    assert c.unescape(obr[4].split("^")[1], segments) == DELIMITED["procedure_description"]


@pytest.mark.parametrize("value", ["", "plain", "|^~\\&", "\\F\\", "a\\E\\b", "ÄÖÜ|ß"])
def test_escape_and_unescape_are_inverse(value):
    segments = c.split_segments("MSH|^~\\&|A|B|C|D|2024||ACK|1|P|2.5")
    escaped = c.escape(value)
    assert not set("|^~&") & set(escaped)
    assert c.unescape(escaped, segments) == value


# ------------------------------------------------------------------ masking


def test_mask_message_hides_names_and_ids():
    text = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5\rPID|1||REALID123^^^H||DOE^JANE||19800101|F\rNK1|1|DOE^JOHN"
    masked = c.mask_message(text)
    assert "REALID123" not in masked
    assert "DOE" not in masked
    assert "19800101" not in masked
    assert masked.split("\r")[0] == text.split("\r")[0]


def test_mask_message_never_leaks_non_hl7():
    assert c.mask_message("DOE^JANE secret") == c.MASK


def test_mask_message_masks_whole_fields_and_unknown_segments():
    text = "\r".join(
        [
            "MSH|^~\\&|A|B|C|D|2024||ORU^R01|X|P|2.5",
            "PID|1||REALID123||THOMPSON^SARAH^R||19800101|F|||1 MAIN ST^^TOWN|||||||ACCT77|123-45-6789",
            "NTE|1||Patient Sarah Thompson called",
            "ZPI|1|THOMPSON",
            "OBX|1|ST|NAME||THOMPSON^SARAH",
            "free text DOE^JANE",
            "MSA|AA|X",
        ]
    )
    masked = c.mask_message(text)
    for secret in ("REALID", "THOMPSON", "Sarah", "SARAH", "MAIN ST", "ACCT77", "6789", "DOE", "19800101"):
        assert secret not in masked
    lines = masked.split("\r")
    assert lines[0] == text.split("\r")[0]
    assert lines[1] == "PID|1||***||***||***|F|||***|||||||***|***"  # whole fields: no initials, no lengths
    assert lines[2] == "NTE|1||***"
    assert lines[5] == c.MASK
    assert lines[6] == "MSA|AA|X"


@pytest.mark.parametrize(
    "params, secrets",
    [
        ({"message_type": "raw", "raw_message": "PID|1||PAT123||DOE^JANE"}, ["PAT123", "DOE", "JANE"]),
        (
            {"message_type": "raw", "raw_message": "MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5\rhello DOE^JANE"},
            ["DOE", "JANE", "hello"],
        ),
        ({"order": {"patient_id": "DOE/JANE"}}, ["DOE", "JANE"]),
        ({"order": {"accession_number": "SECRET/77"}}, ["SECRET", "77"]),
    ],
)
def test_validation_errors_do_not_quote_patient_data(params, secrets):
    with pytest.raises(c.HL7ClientError) as err:
        c.validate_options({"host": "h", "port": 1, **params})
        c.build_message({"host": "h", "port": 1, **params}, None)
    assert err.value.kind == "validation"
    for secret in secrets:
        assert secret not in err.value.msg


def test_encode_message_names_the_field_not_the_value():
    text = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5\rPID|1||SYN1||MÜLLER^ANNA||19700101|O"
    assert c.encode_message(text, "latin-1") == text.encode("latin-1")
    with pytest.raises(c.HL7ClientError) as err:
        c.encode_message(text, "ascii")
    assert err.value.kind == "validation"
    assert "PID-5" in err.value.msg and "'ascii'" in err.value.msg
    assert "MÜLLER" not in err.value.msg and "Ü" not in err.value.msg and "ANNA" not in err.value.msg


@pytest.mark.parametrize("value", ["ACC123456", "T", "THOMPSON^SARAH"])
def test_mask_value_shows_neither_initials_nor_length(value):
    assert c.mask_value(value) == c.MASK == "***"


# ------------------------------------------------------------------ framing


class _Pipe:
    """A real socket pair with the peer side scripted."""

    def __init__(self, data):
        self.a, self.b = socket.socketpair()
        self.b.sendall(data)
        self.b.shutdown(socket.SHUT_WR)

    def close(self):
        self.a.close()
        self.b.close()


@pytest.mark.parametrize(
    "data, payload",
    [
        (b"\x0bMSH|x\x1c\x0d", b"MSH|x"),
        (b"\r\n\x0bMSH|x\x1c\x0d", b"MSH|x"),
    ],
)
def test_read_frame_ok(data, payload):
    pipe = _Pipe(data)
    try:
        assert c.read_frame(pipe.a, time.monotonic() + 2) == payload
    finally:
        pipe.close()


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "expected start block"),
        (b"junk\x0bMSH|x\x1c\x0d", "unexpected bytes before start block"),
        (b"\x0bMSH|x\x1cX", "not followed by 0x0d"),
        (b"\x0bMSH|x", "before the end block"),
        (b"", "without sending an ACK"),
    ],
)
def test_read_frame_malformed(data, fragment):
    pipe = _Pipe(data)
    try:
        with pytest.raises(c.HL7ClientError) as err:
            c.read_frame(pipe.a, time.monotonic() + 2)
        assert err.value.kind == "frame"
        assert fragment in err.value.msg
    finally:
        pipe.close()


def test_read_frame_recognises_a_tls_record():
    pipe = _Pipe(b"\x15\x03\x03\x00\x02\x02\x46")  # a TLS alert record, as some TLS stacks send to plain clients
    try:
        with pytest.raises(c.HL7ClientError) as err:
            c.read_frame(pipe.a, time.monotonic() + 2)
        assert err.value.kind == "frame"
        assert err.value.details["tls_bytes"] is True
        assert "got a TLS record" in err.value.msg
    finally:
        pipe.close()


def test_read_frame_size_limit():
    pipe = _Pipe(b"\x0b" + b"A" * 5000)
    try:
        with pytest.raises(c.HL7ClientError, match="no end block within 1000 bytes"):
            c.read_frame(pipe.a, time.monotonic() + 2, max_bytes=1000)
    finally:
        pipe.close()


# ---------------------------------------------------------------- ACK parse


@pytest.mark.parametrize("code", ["AA", "AE", "AR", "CA", "CE", "CR"])
def test_parse_ack_codes(code):
    ack = c.parse_ack(ack_bytes(code, "C1", "some \\F\\ text")[1:-2], expected_control_id="C1")
    assert ack["ack_code"] == code
    assert ack["ack_text"] == "some | text"
    assert ack["ack_control_id"] == "C1"
    assert ack["ack_message_type"] == "ACK^O01^ACK"


def test_parse_ack_err_segment_v25_and_v23():
    payload = ack_bytes("AE", "C1", "", ["ERR||OBR^1^18|101^Required field missing^HL70357|E"])[1:-2]
    ack = c.parse_ack(payload, "C1")
    assert ack["errors"] == [{"location": "OBR^1^18", "code": "101", "severity": "E", "text": "Required field missing"}]
    assert ack["ack_text"] == "Required field missing"
    old = c.parse_ack(ack_bytes("AE", "C1", "bad", ["ERR|PID^1^3^204"])[1:-2], "C1")
    assert old["errors"][0]["code"] == "204"
    assert old["errors"][0]["location"] == "PID^1^3^204"


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"", "empty MLLP frame"),
        (b"hello", "not an HL7 ACK"),
        (b"MSH|^~\\&|A|B|C|D|2024||ACK|1|P|2.5", "no MSA segment"),
        (b"MSH|^~\\&|A|B|C|D|2024||ACK|1|P|2.5\rMSA|OK|C1", "not one of"),
    ],
)
def test_parse_ack_malformed(payload, fragment):
    with pytest.raises(c.HL7ClientError) as err:
        c.parse_ack(payload, "C1")
    assert err.value.kind == "ack"
    assert fragment in err.value.msg


def test_parse_ack_control_id_mismatch():
    with pytest.raises(c.HL7ClientError) as err:
        c.parse_ack(ack_bytes("AA", "OTHER")[1:-2], "MINE")
    assert err.value.kind == "control_id"
    assert "'MINE'" in err.value.msg and "'OTHER'" in err.value.msg


# ------------------------------------------------------ real peers: listener


def test_send_order_to_listener(mllp_listener):
    params = order_params(accession_number="CLI001", modality="MR")
    text = c.build_message(params, "CLIENT1")
    ack = c.send_message(mllp_listener.host, mllp_listener.port, text, timeout=10)
    assert ack["ack_code"] == "AA"
    assert ack["ack_control_id"] == "CLIENT1"
    assert ack["latency_ms"] > 0
    assert ack["connect_ms"] >= 0
    assert ack["bytes_sent"] == len(text) + 3
    assert ack["bytes_received"] > 10
    assert (mllp_listener.dir / "CLI001.wl").exists()


def test_send_unsupported_type_gets_ar(mllp_listener):
    raw = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|U1|P|2.5.1\rPID|1||X"
    ack = c.send_message(mllp_listener.host, mllp_listener.port, raw, timeout=10)
    assert ack["ack_code"] == "AR"
    assert "unsupported message type" in ack["ack_text"]
    assert ack["errors"][0]["code"] == "200"


# ------------------------------------------------- real peers: edge servers


def test_connection_refused():
    port = free_port()
    with pytest.raises(c.HL7ClientError) as err:
        c.send_message("127.0.0.1", port, c.build_message(order_params(), "R1"), timeout=3)
    assert err.value.kind == "refused"
    assert f"connection refused by 127.0.0.1:{port}" in err.value.msg


def test_timeout_when_peer_is_silent(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: None
    t0 = time.monotonic()
    with pytest.raises(c.HL7ClientError) as err:
        c.send_message("127.0.0.1", scripted_mllp_server.port, c.build_message(order_params(), "T1"), timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert err.value.kind == "timeout"
    assert "no ACK from" in err.value.msg and "T1" in err.value.msg


def test_peer_closes_without_ack(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: ScriptedServer.CLOSE
    with pytest.raises(c.HL7ClientError) as err:
        c.send_message("127.0.0.1", scripted_mllp_server.port, c.build_message(order_params(), "K1"), timeout=3)
    assert err.value.kind == "frame"
    assert "closed the connection without sending an ACK" in err.value.msg


def test_malformed_frame_from_peer(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: b"MSA|AA|x\r\n"
    with pytest.raises(c.HL7ClientError) as err:
        c.send_message("127.0.0.1", scripted_mllp_server.port, c.build_message(order_params(), "M1"), timeout=3)
    assert err.value.kind == "frame"


def test_control_id_mismatch_from_peer(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: ack_bytes("AA", "SOMEONE-ELSE")
    with pytest.raises(c.HL7ClientError) as err:
        c.send_message("127.0.0.1", scripted_mllp_server.port, c.build_message(order_params(), "MINE1"), timeout=3)
    assert err.value.kind == "control_id"
    assert err.value.details["latency_ms"] > 0


def test_reset_after_the_message_went_out_says_sent(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: ScriptedServer.RESET
    with pytest.raises(c.HL7ClientError) as err:
        c.send_message("127.0.0.1", scripted_mllp_server.port, c.build_message(order_params(), "RST1"), timeout=1)
    assert err.value.kind == "connection"
    assert "reset the connection after the message went out" in err.value.msg
    assert err.value.details["sent"] is True
    assert scripted_mllp_server.requests[0].startswith(b"MSH|")


def test_plain_client_against_tls_port_says_the_peer_speaks_tls(openssl_tls_server):
    with pytest.raises(c.HL7ClientError) as err:
        c.send_message("127.0.0.1", openssl_tls_server.port, c.build_message(order_params(), "TLS1"), timeout=5)
    assert err.value.kind == "tls"
    assert "the peer speaks TLS" in err.value.msg
    assert "plain MLLP only" in err.value.msg
    assert err.value.details["sent"] is True


def test_tls_probe_against_tls_and_plain_peers(openssl_tls_server, mllp_listener):
    assert c.peer_speaks_tls("127.0.0.1", openssl_tls_server.port, timeout=5) is True
    # the plain listener discards the ClientHello and waits for a frame (None), or, when the hello's random
    # bytes happen to hold 0x0b ... 0x1c, answers that "frame" with an MLLP AR (False): never a TLS claim
    assert c.peer_speaks_tls(mllp_listener.host, mllp_listener.port, timeout=0.5) is not True
    assert c.peer_speaks_tls("127.0.0.1", free_port(), timeout=0.5) is None


def test_enhanced_mode_commit_ack(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: ack_bytes("CA", control_id_of(req), "committed")
    ack = c.send_message("127.0.0.1", scripted_mllp_server.port, c.build_message(order_params(), "E1"), timeout=3)
    assert ack["ack_code"] == "CA"
    assert ack["ack_text"] == "committed"
    assert scripted_mllp_server.requests[0].startswith(b"MSH|")


def test_argument_spec_shape():
    spec = c.hl7_argument_spec()
    assert spec["port"]["default"] == 2575
    assert set(spec["message_type"]["choices"]) == {"ORM^O01", "ADT^A01", "raw"}
    assert "accession_number" in spec["order"]["options"]
