"""tools/order_sender.py: the synthetic ordering system the live-RIS tests and benchmarks run.

Checked against the real cu-ris listener (hl7_fixtures.ListenerProcess, a fresh SQLite order
database): every order the sender records as acknowledged is in the RIS's database, read back by
an independent reader (the release's own ``bin/ris-orders``), and the count matches. A stopped
interface is recorded as refusals, never as acknowledgements, and ``unavailability`` measures it.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hl7_fixtures import ListenerProcess, RisListener, ScriptedServer, ack_bytes, control_id_of, release_root

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "order_sender.py"
sys.path.insert(0, str(ROOT / "tools"))

from order_sender import Sender, acknowledged, main, records, unavailability  # noqa: E402


def ris_orders(db: Path) -> list[dict]:
    """The orders in the RIS database, as the release's own reader lists them."""
    proc = subprocess.run(
        [sys.executable, str(release_root() / "bin" / "ris-orders"), "--db", str(db), "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(proc.stdout)


def assert_acknowledged_are_stored(out: Path, db: Path) -> list[dict]:
    acks = acknowledged(out)
    stored = {row["accession"]: row for row in ris_orders(db)}
    assert len(stored) == len(acks)
    for record in acks:
        assert record["accession"] in stored, record
        assert stored[record["accession"]]["control_id"] == record["control_id"]
        assert stored[record["accession"]]["status"] == "scheduled"
    return acks


def wait_for(predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def ris(tmp_path):
    listener = ListenerProcess(tmp_path / "ris")
    yield listener
    listener.stop()


def test_every_acknowledged_order_is_in_the_ris_database(ris, tmp_path):
    out = tmp_path / "sent.jsonl"
    sender = Sender(ris.host, ris.port, out, interval=0.02, max_count=12, timeout=5, modality="MR")
    sender.run()
    acks = assert_acknowledged_are_stored(out, ris.db)
    assert len(acks) == 12 and sender.counts["acknowledged"] == 12
    assert all(r["ack"] == "AA" and r["message"] == "" and r["latency_ms"] > 0 for r in acks)
    assert all(len(r["accession"]) <= 16 and r["accession"].startswith("CUS") for r in acks)
    assert len({r["accession"] for r in acks}) == 12
    assert {row["modality"] for row in ris_orders(ris.db)} == {"MR"}
    text = out.read_text()
    assert "ZZTEST" not in text and "SYNTHETIC" not in text and "PID" not in text


def test_an_outage_is_refused_and_measured(tmp_path):
    """The interface stops mid-run and comes back on the same port and database (an upgrade)."""
    out = tmp_path / "sent.jsonl"
    first = ListenerProcess(tmp_path / "ris")
    sender = Sender(first.host, first.port, out, interval=0.03, max_seconds=60, timeout=2)
    second = None
    try:
        sender.start()
        wait_for(lambda: len(acknowledged(out)) >= 3)
        first.stop()
        wait_for(lambda: sum(r["status"] == "refused" for r in records(out)) >= 4)
        second = RisListener(
            release_root(), first.db, first.dir, "--port", str(first.port), log=tmp_path / "listener2.log"
        )
        seen = len(records(out))
        wait_for(lambda: any(r["status"] == "acknowledged" for r in records(out)[seen:]))
    finally:
        sender.stop()
        sender.join(10)
        if second is not None:
            second.stop()
        first.stop()
    attempts = records(out)
    assert_acknowledged_are_stored(out, first.db)
    failed = [r for r in attempts if r["status"] != "acknowledged"]
    # an attempt in flight when the listener stops may see a reset or a close: refused all the same
    assert {r["status"] for r in failed} == {"refused"} and all(r["ack"] is None for r in failed)
    assert sum(r["message"].startswith("refused: connection refused") for r in failed) >= 4
    report = unavailability(attempts, 0.03)
    assert len(report["outages"]) == 1
    outage = report["longest"]
    assert outage == report["outages"][0]
    assert outage["attempts"] == len(failed)
    assert outage["start"] == failed[0]["t"]
    back = next(r for r in attempts if r["t"] > failed[-1]["t"])
    assert back["status"] == "acknowledged" and outage["end"] == back["t"]
    assert outage["seconds"] == pytest.approx(back["t"] - failed[0]["t"], abs=0.002)
    assert report["total_seconds"] == outage["seconds"] > 0


def test_the_command_line_stops_on_sigterm_and_summarises(ris, tmp_path):
    out = tmp_path / "sent.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(TOOL),
            "--host",
            ris.host,
            "--port",
            str(ris.port),
            "--out",
            str(out),
            "--interval",
            "0.05",
            "--prefix",
            "SIG",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(acknowledged(out)) >= 3)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    attempts = records(out)
    assert summary == {
        "attempts": len(attempts),
        "acknowledged": len(attempts),
        "rejected": 0,
        "refused": 0,
        "errors": 0,
        "out": str(out),
    }
    assert all(r["accession"].startswith("SIG") for r in attempts)
    assert_acknowledged_are_stored(out, ris.db)


def test_a_closed_port_is_refused_and_restarts_keep_accessions_unique(closed_port, tmp_path, capsys):
    out = tmp_path / "sent.jsonl"
    ahead = "CUS" + "ZZZZZZZ0"  # an earlier run's accession from a clock that was far ahead
    out.write_text(json.dumps({"t": 1.0, "accession": ahead, "status": "acknowledged"}) + "\n")
    for _ in range(2):
        assert main(["--port", str(closed_port), "--out", str(out), "--interval", "0.01", "--max-count", "3"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary == {"attempts": 3, "acknowledged": 0, "rejected": 0, "refused": 3, "errors": 0, "out": str(out)}
    attempts = records(out)[1:]
    assert [r["status"] for r in attempts] == ["refused"] * 6
    accessions = [r["accession"] for r in attempts]
    assert len(set(accessions)) == 6 and all(ahead < a and len(a) <= 16 for a in accessions)
    assert acknowledged(out) == [records(out)[0]]
    report = unavailability(attempts, 0.01)
    assert len(report["outages"]) == 1 and report["longest"]["attempts"] == 6
    assert report["longest"]["end"] == pytest.approx(attempts[-1]["t"] + attempts[-1]["latency_ms"] / 1000, abs=0.002)


def test_answers_other_than_aa_are_not_acknowledged(tmp_path):
    """A scripted peer answers AE with a text, AR, CA, an ACK for another message, then closes."""
    answers = [
        lambda cid: ack_bytes("AE", cid, "OBR-24 modality is not valid"),
        lambda cid: ack_bytes("AR", cid),
        lambda cid: ack_bytes("CA", cid),
        lambda cid: ack_bytes("AA", "CUOTHERMESSAGE"),
        lambda cid: ScriptedServer.CLOSE,
        lambda cid: ack_bytes("AA", cid),
    ]
    server = ScriptedServer()
    server.responder = lambda request: answers[len(server.requests) - 1](control_id_of(request))
    out = tmp_path / "sent.jsonl"
    try:
        sender = Sender("127.0.0.1", server.port, out, interval=0.01, max_count=len(answers), timeout=2)
        sender.run()
    finally:
        server.close()
    got = [(r["status"], r["ack"]) for r in records(out)]
    assert got == [
        ("rejected", "AE"),
        ("rejected", "AR"),
        ("error", "CA"),
        ("error", "AA"),
        ("refused", None),
        ("acknowledged", "AA"),
    ]
    messages = [r["message"] for r in records(out)]
    assert messages[0] == "OBR-24 modality is not valid" and messages[1] == "AR without a text"
    assert messages[3].startswith("control_id: ") and messages[4].startswith("frame: ")
    assert sender.summary()["errors"] == 2 and [r["accession"] for r in acknowledged(out)] == [
        records(out)[-1]["accession"]
    ]
    sent = b"".join(server.requests).decode()
    assert all(r["accession"] in sent and r["control_id"] in sent for r in records(out))


def test_unavailability_of_hand_made_records():
    def rec(t, status, latency_ms=10.0):
        return {"t": t, "status": status, "latency_ms": latency_ms}

    attempts = [
        rec(100.0, "acknowledged"),
        rec(101.0, "refused"),
        rec(102.0, "error", 2000.0),
        rec(104.0, "acknowledged"),
        rec(105.0, "rejected"),
        rec(106.0, "acknowledged"),
        rec(107.0, "refused"),
        rec(108.0, "refused", 500.0),
    ]
    report = unavailability(list(reversed(attempts)), 1.0)  # the order of the records does not matter
    assert report["outages"] == [
        {"start": 101.0, "end": 104.0, "seconds": 3.0, "attempts": 2},
        {"start": 105.0, "end": 106.0, "seconds": 1.0, "attempts": 1},
        {"start": 107.0, "end": 108.5, "seconds": 1.5, "attempts": 2},
    ]
    assert report["longest"] == report["outages"][0]
    assert report["total_seconds"] == 5.5 and report["resolution_seconds"] == 1.0
    empty = unavailability([rec(1.0, "acknowledged"), rec(2.0, "acknowledged")], 1.0)
    assert empty == {"outages": [], "longest": None, "total_seconds": 0, "resolution_seconds": 1.0}
    assert unavailability([], 0.5)["longest"] is None
    with pytest.raises(ValueError, match="interval"):
        unavailability(attempts, 0)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--port", "0"], "--port"),
        (["--port", "65536"], "--port"),
        (["--port", "x"], "--port"),
        (["--port", "2575", "--interval", "0"], "--interval"),
        (["--port", "2575", "--interval", "-1"], "--interval"),
        (["--port", "2575", "--max-seconds", "nan"], "--max-seconds"),
        (["--port", "2575", "--max-count", "0"], "--max-count"),
        (["--port", "2575", "--timeout", "0"], "--timeout"),
        (["--port", "2575", "--prefix", "TOOLONG"], "--prefix"),
        (["--port", "2575", "--prefix", "A-B"], "--prefix"),
        (["--port", "2575", "--host", "bad host"], "--host"),
        (["--port", "2575", "--modality", "C|T"], "--modality"),
        (["--port", "2575", "--station-aet", "A" * 17], "--station-aet"),
    ],
)
def test_bad_options_name_the_option(args, option, tmp_path, capsys):
    out = tmp_path / "sent.jsonl"
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(out)])
    assert exc.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err
    assert not out.exists()
