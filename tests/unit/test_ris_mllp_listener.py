"""The lab RIS's listener (a cu-ris release, products/cu_ris) as a real process: HL7 order in, DICOM
worklist entry out.

The order is sent with the project's hl7_client, then a real DCMTK wlmscpfs
serves the worklist directory and DCMTK findscu -W finds (or no longer finds)
the entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time

import hl7_fixtures
import pydicom
import pytest
from hl7_fixtures import (
    ListenerProcess,
    free_port,
    hl7_client,
)

mllp_listener = hl7_fixtures.mllp_listener  # a fixture, used by name

c = hl7_client()

WLMSCPFS = shutil.which("wlmscpfs", path="/usr/bin:/usr/local/bin")
# DCMTK's findscu, not pynetdicom's app of the same name in the venv
FINDSCU = shutil.which("findscu", path="/usr/bin:/usr/local/bin")

if not (WLMSCPFS and FINDSCU):
    raise RuntimeError("DCMTK wlmscpfs/findscu are not installed: run `make deps` (apt-get install dcmtk)")


@pytest.fixture
def worklist_scp(mllp_listener):
    port = free_port()
    proc = subprocess.Popen(
        [WLMSCPFS, "-dfp", str(mllp_listener.base), "-ll", "warn", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def find_worklist(port, tmp_path, aec="RIS1", **keys):
    """C-FIND on the worklist with DCMTK findscu -W; return the response datasets."""
    out = tmp_path / f"rsp-{time.monotonic_ns()}"
    out.mkdir()
    args = [FINDSCU, "-W", "-aet", "CUTEST", "-aec", aec, "-X", "-od", str(out)]
    query = {
        "0008,0050": "",
        "0010,0010": "",
        "0010,0020": "",
        "0020,000d": "",
        "0032,1060": "",
        "0040,1001": "",
        "0040,0100[0].0008,0060": "",
        "0040,0100[0].0040,0001": "",
        "0040,0100[0].0040,0002": "",
        "0040,0100[0].0040,0009": "",
    }
    query.update(keys)
    for tag, value in query.items():
        args += ["-k", f"{tag}={value}" if value else tag]
    args += ["127.0.0.1", str(port)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return [pydicom.dcmread(str(p)) for p in sorted(out.iterdir())]


def send(listener, text):
    return c.send_message(listener.host, listener.port, text, timeout=10)


def order(accession, control="NW", **fields):
    params = {
        "host": "127.0.0.1",
        "port": 1,
        "message_type": "ORM^O01",
        "order": {"accession_number": accession, "control": control, **fields},
    }
    return c.build_message(params, c.new_control_id())


def raw(*segments):
    return "\r".join(segments)


MSH = "MSH|^~\\&|TEST|TEST|RIS|RAD|20240101000000||%s|%s|P|%s"


# ------------------------------------------------------ order -> worklist


def test_order_becomes_worklist_entry(mllp_listener, worklist_scp, tmp_path):
    ack = send(
        mllp_listener,
        order(
            "WL0001",
            modality="CT",
            station_aetitle="CT01",
            scheduled_datetime="202403041530",
            patient_id="SYNWL1",
            procedure_description="CT HEAD",
        ),
    )
    assert ack["ack_code"] == "AA"
    found = find_worklist(worklist_scp, tmp_path, **{"0008,0050": "WL0001"})
    assert len(found) == 1
    ds = found[0]
    assert ds.AccessionNumber == "WL0001"
    assert str(ds.PatientName) == "ZZTEST^SYNTHETIC"
    assert ds.PatientID == "SYNWL1"
    assert ds.RequestedProcedureDescription == "CT HEAD"
    sps = ds.ScheduledProcedureStepSequence[0]
    assert sps.Modality == "CT"
    assert sps.ScheduledStationAETitle == "CT01"
    assert sps.ScheduledProcedureStepStartDate == "20240304"
    assert ds.StudyInstanceUID.startswith("2.25.")


def test_match_by_modality_and_station(mllp_listener, worklist_scp, tmp_path):
    send(mllp_listener, order("WL0002", modality="MR", station_aetitle="MR01"))
    send(mllp_listener, order("WL0003", modality="CT", station_aetitle="CT01"))
    found = find_worklist(worklist_scp, tmp_path, **{"0040,0100[0].0008,0060": "MR"})
    assert [ds.AccessionNumber for ds in found] == ["WL0002"]
    found = find_worklist(worklist_scp, tmp_path, **{"0040,0100[0].0040,0001": "CT01"})
    assert [ds.AccessionNumber for ds in found] == ["WL0003"]


def test_cancel_removes_entry(mllp_listener, worklist_scp, tmp_path):
    send(mllp_listener, order("WL0004"))
    assert len(find_worklist(worklist_scp, tmp_path, **{"0008,0050": "WL0004"})) == 1
    ack = send(mllp_listener, order("WL0004", control="CA"))
    assert ack["ack_code"] == "AA"
    assert "removed" in ack["ack_text"]
    assert find_worklist(worklist_scp, tmp_path, **{"0008,0050": "WL0004"}) == []
    again = send(mllp_listener, order("WL0004", control="CA"))
    assert again["ack_code"] == "AA"
    assert "already cancelled; nothing changed" in again["ack_text"]


def test_replace_order_xo(mllp_listener, worklist_scp, tmp_path):
    send(mllp_listener, order("WL0005", modality="CT"))
    text = order("WL0005", modality="MR").replace("ORC|NW|", "ORC|XO|")
    assert send(mllp_listener, text)["ack_code"] == "AA"
    found = find_worklist(worklist_scp, tmp_path, **{"0008,0050": "WL0005"})
    assert [ds.ScheduledProcedureStepSequence[0].Modality for ds in found] == ["MR"]


def test_no_temp_files_left_and_lockfile_kept(mllp_listener):
    for i in range(5):
        send(mllp_listener, order(f"WLT{i:03d}"))
    names = sorted(os.listdir(mllp_listener.dir))
    assert names == ["WLT000.wl", "WLT001.wl", "WLT002.wl", "WLT003.wl", "WLT004.wl", "lockfile"]


def test_dump_injection_is_neutralised(mllp_listener, worklist_scp, tmp_path):
    text = raw(
        MSH % ("ORM^O01", "INJ1", "2.5.1"),
        "PID|1||SYNINJ||EVIL](0008,0050) SH [X^NAME",
        "ORC|NW|WL0006|WL0006",
        "OBR|1|WL0006|WL0006|C^D]ESC" + "|" * 14 + "WL0006",
    )
    assert send(mllp_listener, text)["ack_code"] == "AA"
    found = find_worklist(worklist_scp, tmp_path, **{"0008,0050": "WL0006"})
    assert len(found) == 1
    assert found[0].AccessionNumber == "WL0006"
    assert "]" not in str(found[0].PatientName)


# ------------------------------------------------------ ACK codes


@pytest.mark.parametrize(
    "text, code, fragment, err",
    [
        ("hello, not HL7", "AR", "does not start with an MSH", "100"),
        (MSH % ("ORM^O01", "", "2.5.1"), "AR", "MSH-10 message control id is required", "101"),
        (MSH % ("ORM^O01", "V1", "3.0"), "AR", "unsupported HL7 version", "203"),
        (MSH % ("ORU^R01", "U1", "2.5.1"), "AR", "unsupported message type ORU^R01", "200"),
        (raw(MSH % ("ORM^O01", "O1", "2.5.1"), "PID|1||SYN1"), "AE", "ORC segment is required", "100"),
        (
            raw(MSH % ("ORM^O01", "O2", "2.5.1"), "PID|1||SYN1", "ORC|NW", "OBR|1"),
            "AE",
            "accession number (or ORC-3/ORC-2) is required",
            "101",
        ),
        (
            raw(MSH % ("ORM^O01", "O3", "2.5.1"), "PID|1||SYN1", "ORC|NW|A/B", "OBR|1"),
            "AE",
            "accession number must be",
            "102",
        ),
        (
            raw(MSH % ("ORM^O01", "O4", "2.5.1"), "PID|1||SYN1", "ORC|SC|ACC9", "OBR|1"),
            "AR",
            "unsupported order control",
            "200",
        ),
        (
            raw(MSH % ("ORM^O01", "O5", "2.5.1"), "PID|1", "ORC|NW|ACC9", "OBR|1"),
            "AE",
            "PID-3 patient identifier is required",
            "101",
        ),
    ],
)
def test_error_acks(mllp_listener, text, code, fragment, err):
    sock = socket.create_connection((mllp_listener.host, mllp_listener.port), timeout=10)
    try:
        sock.sendall(c.frame(text))
        payload = c.read_frame(sock, time.monotonic() + 10)
    finally:
        sock.close()
    ack = c.parse_ack(payload)
    assert ack["ack_code"] == code
    assert fragment in ack["ack_text"]
    assert ack["errors"][0]["code"] == err
    assert ack["ack_message_type"].startswith("ACK")


def test_adt_accepted_without_worklist_change(mllp_listener):
    text = c.build_message({"host": "h", "port": 1, "message_type": "ADT^A01"}, "ADT1")
    ack = send(mllp_listener, text)
    assert ack["ack_code"] == "AA"
    assert ack["ack_message_type"] == "ACK^A01^ACK"
    assert [n for n in os.listdir(mllp_listener.dir) if n.endswith(".wl")] == []


def test_dump2dcm_failure_is_ae(tmp_path):
    listener = ListenerProcess(tmp_path, extra_args=("--dump2dcm", "/bin/false"))
    try:
        ack = send(listener, order("WL0007"))
        assert ack["ack_code"] == "AE"
        assert "worklist entry could not be created" in ack["ack_text"]
        assert [n for n in os.listdir(listener.dir) if n != "lockfile"] == []
    finally:
        listener.stop()


# ------------------------------------------------------ transport


def test_several_messages_on_one_connection_and_noise(mllp_listener):
    sock = socket.create_connection((mllp_listener.host, mllp_listener.port), timeout=10)
    try:
        data = b"".join(b"\r\n" + c.frame(order(f"WLM{i:03d}")) for i in range(3))
        sock.sendall(b"garbage outside a frame" + data)
        acks = [c.parse_ack(c.read_frame(sock, time.monotonic() + 10)) for _ in range(3)]
    finally:
        sock.close()
    assert [a["ack_code"] for a in acks] == ["AA", "AA", "AA"]
    assert len({a["ack_control_id"] for a in acks}) == 3
    assert "outside an MLLP frame" in mllp_listener.log_text() or "before the MLLP start block" in (
        mllp_listener.log_text()
    )


def test_frame_split_across_packets(mllp_listener):
    data = c.frame(order("WLS001"))
    sock = socket.create_connection((mllp_listener.host, mllp_listener.port), timeout=10)
    try:
        for i in range(0, len(data), 7):
            sock.sendall(data[i : i + 7])
            time.sleep(0.001)
        ack = c.parse_ack(c.read_frame(sock, time.monotonic() + 10))
    finally:
        sock.close()
    assert ack["ack_code"] == "AA"
    assert (mllp_listener.dir / "WLS001.wl").exists()


def test_logs_carry_no_phi(mllp_listener):
    send(mllp_listener, order("WLP12345", patient_id="SYNPHI999"))
    log = mllp_listener.log_text()
    assert "stored, worklist entry scheduled" in log
    assert "SYNPHI999" not in log
    assert "WLP12345" not in log
    assert "ZZTEST" not in log


def test_survives_abrupt_disconnect(mllp_listener):
    sock = socket.create_connection((mllp_listener.host, mllp_listener.port), timeout=5)
    sock.sendall(b"\x0bMSH|^~\\&|half a message")
    sock.close()
    assert send(mllp_listener, order("WLD001"))["ack_code"] == "AA"


# ------------------------------------------------------ hardening


def exchange(listener, data, wait=10):
    """Send bytes on a new connection and return the parsed ACK."""
    sock = socket.create_connection((listener.host, listener.port), timeout=10)
    try:
        sock.sendall(data)
        return c.parse_ack(c.read_frame(sock, time.monotonic() + wait))
    finally:
        sock.close()


def order_raw(control_id, accession, obr36="", pid7="19700101", obr21="CT01", obr4="C1^CT HEAD", version="2.5.1"):
    obr = ["OBR", "1", accession, accession, obr4] + [""] * 13
    obr += [accession, "", "", obr21, "", "", "CT"] + [""] * 11 + [obr36]
    return raw(
        MSH % ("ORM^O01", control_id, version),
        f"PID|1||SYN{control_id}^^^H^MR||ZZTEST^SYNTHETIC||{pid7}|O",
        f"ORC|NW|{accession}|{accession}",
        "|".join(obr),
    )


def test_escaped_delimiters_reach_the_worklist(mllp_listener, worklist_scp, tmp_path):
    text = order_raw(
        "ESC1",
        "WLE001",
        obr36="20240304153000.1234+0100",
        obr21="CT\\S\\01",
        obr4="C1^HEAD \\T\\ NECK \\S\\ 2 \\F\\ W/O \\R\\ CONTRAST",
    )
    ack = send(mllp_listener, text)
    assert ack["ack_code"] == "AA", ack
    found = find_worklist(worklist_scp, tmp_path, **{"0008,0050": "WLE001"})
    assert len(found) == 1
    sps = found[0].ScheduledProcedureStepSequence[0]
    assert sps.ScheduledStationAETitle == "CT^01"
    assert sps.Modality == "CT"
    assert sps.ScheduledProcedureStepStartDate == "20240304"
    assert found[0].RequestedProcedureDescription == "HEAD & NECK ^ 2 | W/O ~ CONTRAST"


@pytest.mark.parametrize(
    "fields, location, fragment",
    [
        ({"obr36": "20241399"}, "OBR^1^36", "OBR-36 scheduled date/time '20241399' is not a real date"),
        ({"obr36": "202402301200"}, "OBR^1^36", "OBR-36"),
        ({"obr36": "2024030425"}, "OBR^1^36", "OBR-36"),
        ({"obr36": "tomorrow"}, "OBR^1^36", "OBR-36"),
        ({"obr36": "202403"}, "OBR^1^36", "OBR-36"),
        ({"pid7": "19801345"}, "PID^1^7", "PID-7 date of birth is not a real date"),
        ({"obr21": "CT\\E\\01"}, "OBR^1^21", "OBR-21 scheduled station AE title"),
        ({"obr21": "STATION-NAME-TOO-LONG"}, "OBR^1^21", "OBR-21 scheduled station AE title"),
    ],
)
def test_bad_dates_and_station_are_answered_ae_naming_the_field(mllp_listener, fields, location, fragment):
    ack = exchange(mllp_listener, c.frame(order_raw("BAD1", "WLB001", **fields)))
    assert ack["ack_code"] == "AE"
    assert ack["errors"][0]["location"] == location
    assert ack["errors"][0]["code"] == "102"
    assert fragment in ack["ack_text"]
    assert "19801345" not in ack["ack_text"]  # a birth date is patient data: never echoed
    assert not (mllp_listener.dir / "WLB001.wl").exists()


def test_version_with_trailing_space_is_trimmed(mllp_listener):
    ack = exchange(mllp_listener, c.frame(order_raw("VSP1", "WLV001", version="2.4 ")))
    assert ack["ack_code"] == "AA", ack
    assert ack["message"].split("\r")[0].split("|")[11] == "2.4"
    assert (mllp_listener.dir / "WLV001.wl").exists()


def test_frame_ending_without_cr_is_answered_at_once(mllp_listener):
    sock = socket.create_connection((mllp_listener.host, mllp_listener.port), timeout=10)
    try:
        sock.sendall(b"\x0b" + order("WLN001").encode() + b"\x1c")  # no 0x0d
        t0 = time.monotonic()
        first = c.parse_ack(c.read_frame(sock, time.monotonic() + 3))  # the idle timeout is 5 s
        assert time.monotonic() - t0 < 3
        sock.sendall(b"\r" + c.frame(order("WLN002")))  # the late 0x0d is not noise
        second = c.parse_ack(c.read_frame(sock, time.monotonic() + 3))
    finally:
        sock.close()
    assert [first["ack_code"], second["ack_code"]] == ["AA", "AA"]
    assert (mllp_listener.dir / "WLN001.wl").exists() and (mllp_listener.dir / "WLN002.wl").exists()
    assert "discarded" not in mllp_listener.log_text()


def test_oversize_frame_is_answered_ar_then_closed(tmp_path):
    listener = ListenerProcess(tmp_path, extra_args=("--max-frame-bytes", "2000"))
    try:
        big = order_raw("BIG1", "WLG001", obr4="C1^" + "X" * 60) + "\rNTE|1||" + "A" * 8000
        sock = socket.create_connection((listener.host, listener.port), timeout=10)
        try:
            sock.sendall(c.frame(big))
            ack = c.parse_ack(c.read_frame(sock, time.monotonic() + 5))
            sock.settimeout(5)
            rest = sock.recv(100)  # then the listener closes the connection
        finally:
            sock.close()
        assert ack["ack_code"] == "AR"
        assert ack["ack_control_id"] == "BIG1"
        assert "message larger than 2000 bytes" in ack["ack_text"]
        assert ack["errors"][0]["code"] == "207"
        assert rest == b""
        assert not (listener.dir / "WLG001.wl").exists()
        assert send(listener, order("WLG002"))["ack_code"] == "AA"  # and keeps serving
    finally:
        listener.stop()


def thread_count(pid):
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line.split()[1] for line in fh if line.startswith("Threads:")))


def test_connection_limit_refuses_the_rest_at_once(tmp_path):
    listener = ListenerProcess(tmp_path, extra_args=("--max-connections", "3", "--idle-timeout", "30"))
    held, extra = [], []
    try:
        for i in range(3):  # three connections that each got an answer, then stay open and idle
            sock = socket.create_connection((listener.host, listener.port), timeout=10)
            sock.sendall(c.frame(order(f"WLC{i:03d}")))
            assert c.parse_ack(c.read_frame(sock, time.monotonic() + 10))["ack_code"] == "AA"
            held.append(sock)
        t0 = time.monotonic()
        for _ in range(20):
            sock = socket.create_connection((listener.host, listener.port), timeout=10)
            sock.settimeout(10)
            extra.append(sock)
        for sock in extra:
            with contextlib.suppress(ConnectionResetError):  # closed at once, not after the 30 s idle timeout
                assert sock.recv(100) == b""
        assert time.monotonic() - t0 < 15
        assert thread_count(listener.proc.pid) <= 3 + 2  # handlers + main (+ a signal helper at most)
        assert "--max-connections" in listener.log_text()
        held.pop().close()  # a slot frees up: the next connection is served
        deadline = time.monotonic() + 15
        while True:
            try:
                assert send(listener, order("WLC100"))["ack_code"] == "AA"
                break
            except c.HL7ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        for sock in held + extra:
            sock.close()
        listener.stop()


def test_log_masks_are_fixed_tokens(mllp_listener):
    send(mllp_listener, order("WLM12345", patient_id="SYNPHI42"))
    log = mllp_listener.log_text()
    assert "accession=*** patient=***" in log
    assert "WL***" not in log and "SY***" not in log
