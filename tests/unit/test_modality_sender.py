"""tools/modality_sender.py: the synthetic modality the live-PACS tests and benchmarks run.

Checked against a real Orthanc: every attempt the sender records as acknowledged is on the PACS
(found by SOP Instance UID through Orthanc's own REST API), and a closed port is recorded as a
refusal, never as an acknowledgement.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from modality_sender import Sender, acknowledged  # noqa: E402


def test_every_acknowledged_store_is_on_the_pacs(orthanc, tmp_path):
    out = tmp_path / "sent.jsonl"
    sender = Sender(orthanc.host, orthanc.dicom_port, orthanc.aet, "CUMODALITY", out, interval=0.05,
                    max_seconds=30, max_count=8, timeout=5)
    sender.run()
    acks = acknowledged(out)
    assert len(acks) == 8 and sender.counts["acknowledged"] == 8
    for record in acks:
        found = orthanc.rest("POST", "/tools/lookup", record["sop_instance_uid"])
        assert [f["Type"] for f in found] == ["Instance"], record
        assert record["dimse_status"] == 0


def test_a_closed_port_is_a_refusal_not_an_acknowledgement(closed_port, tmp_path):
    out = tmp_path / "sent.jsonl"
    sender = Sender("127.0.0.1", closed_port, "PACS1", "CUMODALITY", out, interval=0.01, max_count=3, timeout=1)
    sender.run()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in lines] == ["refused"] * 3
    assert acknowledged(out) == []


def test_the_command_line_stops_by_itself_and_summarises(orthanc, tmp_path):
    out = tmp_path / "sent.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "modality_sender.py"),
                           "--port", str(orthanc.dicom_port), "--called-ae", orthanc.aet, "--out", str(out),
                           "--interval", "0.05", "--max-count", "3"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["acknowledged"] == 3 and len(acknowledged(out)) == 3
