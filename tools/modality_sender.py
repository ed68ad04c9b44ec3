#!/usr/bin/env python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""A synthetic modality: stores a small synthetic instance every INTERVAL seconds and records
every answer, so that a test or a benchmark can prove that nothing the PACS acknowledged was lost.

    .venv/bin/python tools/modality_sender.py --port 14242 --called-ae PACS1 --out sent.jsonl \\
        --interval 0.2 --max-seconds 900

One association per instance (as many modalities do), C-STORE of a fresh synthetic instance
(``dicom_synth.make_canary_instance``: new UIDs, SYNTH patient, no real data), with short
timeouts so that a PACS that does not answer shows as a refusal, not a hang. Every attempt is one
JSON line in ``--out``: ``{"t": epoch, "sop_instance_uid", "study_instance_uid", "status":
"acknowledged"|"failed"|"refused"|"error", "dimse_status", "latency_ms", "message"}``. Only
``acknowledged`` (DIMSE status 0x0000) counts as accepted by the PACS.

It stops on SIGTERM/SIGINT, after ``--max-seconds`` or after ``--max-count`` attempts, whichever
comes first, and prints a one-line JSON summary. It sends only to the address it is given; use
loopback or the lab's own containers.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))

from dicom_synth import make_canary_instance  # noqa: E402


def acknowledged(path: Path) -> list[dict]:
    """The attempts of a sender's output file that the PACS acknowledged (DIMSE status 0x0000)."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("status") == "acknowledged":
                out.append(record)
    return out


class Sender(threading.Thread):
    """C-STORE a fresh synthetic instance every ``interval`` seconds until stopped."""

    def __init__(self, host: str, port: int, called_ae: str, calling_ae: str, out: Path, interval: float = 0.2,
                 max_seconds: float = 900.0, max_count: int = 100000, timeout: float = 5.0, size_px: int = 16):
        super().__init__(daemon=True)
        self.host, self.port, self.called_ae, self.calling_ae = host, port, called_ae, calling_ae
        self.out, self.interval, self.max_seconds, self.max_count = out, interval, max_seconds, max_count
        self.timeout, self.size_px = timeout, size_px
        self.stop_event = threading.Event()
        self.counts = {"acknowledged": 0, "failed": 0, "refused": 0, "error": 0}

    def stop(self) -> None:
        self.stop_event.set()

    def store_one(self) -> dict:
        from pynetdicom import AE

        ds = make_canary_instance(size_px=self.size_px, modality="OT")
        record = {"t": round(time.time(), 3), "sop_instance_uid": str(ds.SOPInstanceUID),
                  "study_instance_uid": str(ds.StudyInstanceUID), "status": "error", "dimse_status": None,
                  "latency_ms": None, "message": ""}
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = self.timeout
        ae.dimse_timeout = self.timeout
        ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        started = time.monotonic()
        try:
            assoc = ae.associate(self.host, self.port, ae_title=self.called_ae)
            if not assoc.is_established:
                record.update(status="refused", message="association not established (refused, aborted or timed out)")
                return record
            try:
                status = assoc.send_c_store(ds)
                code = int(status.Status) if status and "Status" in status else None
                record["dimse_status"] = code
                if code == 0x0000:
                    record["status"] = "acknowledged"
                else:
                    record.update(status="failed", message="no response" if code is None else f"status 0x{code:04X}")
            finally:
                assoc.release()
        except Exception as exc:  # a sender must survive whatever the PACS does  # noqa: BLE001
            record.update(status="error", message=f"{type(exc).__name__}: {exc}")
        finally:
            record["latency_ms"] = round((time.monotonic() - started) * 1000.0, 1)
        return record

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        attempts = 0
        with self.out.open("a", encoding="utf-8") as handle:
            while not self.stop_event.is_set() and time.monotonic() < deadline and attempts < self.max_count:
                tick = time.monotonic()
                record = self.store_one()
                attempts += 1
                self.counts[record["status"]] += 1
                handle.write(json.dumps(record, sort_keys=True) + "\n")
                handle.flush()
                self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - tick)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--called-ae", required=True)
    parser.add_argument("--calling-ae", default="CUMODALITY")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per attempt (appended)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between stores (default 0.2)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long (default 900)")
    parser.add_argument("--max-count", type=int, default=100000, help="stop after this many attempts")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds for each network step (default 5)")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.max_seconds <= 0 or args.max_count < 1:
        parser.error("--interval and --max-seconds must be positive, --max-count at least 1")
    sender = Sender(args.host, args.port, args.called_ae, args.calling_ae, args.out, args.interval,
                    args.max_seconds, args.max_count, args.timeout)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sender.stop())
    sender.start()
    while sender.is_alive():
        sender.join(0.2)
    print(json.dumps({"out": str(args.out), **sender.counts}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
