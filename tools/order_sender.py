#!/usr/bin/env python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""A synthetic ordering system (HIS/CPOE): sends a new order to the RIS every INTERVAL seconds and
records every answer, so that a test or a benchmark can prove that no order the RIS acknowledged
was lost, and measure how long the HL7 interface refused or did not answer.

    .venv/bin/python tools/order_sender.py --port 12575 --out sent.jsonl --interval 0.1 --max-seconds 900

One ORM^O01 NW order per attempt, one TCP connection per message (MLLP), built and sent by the
project's own HL7 client (``plugins/module_utils/hl7_client.py``): a synthetic patient
(``ZZTEST^SYNTHETIC``, random SYN patient id) and a fresh accession number, PREFIX followed by
the attempt's time in milliseconds in base 36 (at most 16 characters; unique across restarts that
append to the same ``--out``, see :func:`next_stamp`). Attempts follow a fixed schedule, t0 +
k * INTERVAL; one that overruns is followed by the next at once, never by a burst.

Every attempt is one JSON line in ``--out`` (appended, flushed at once): ``{"t": epoch start,
"accession", "control_id", "status": "acknowledged"|"rejected"|"refused"|"error", "ack": "AA"|
"AE"|"AR"|... or null, "latency_ms", "message": short reason}``. Only an AA counts as
``acknowledged``. ``rejected``: the RIS answered AE/AR (or CE/CR), message is its MSA-3 text.
``refused``: the interface refused the connection, reset or closed it without an answer, or did
not answer within ``--timeout`` (the HL7 client's error kind refused, timeout or connection, or
frame with nothing received); message is the client's error kind and text. ``error``: any other
failure (a malformed frame or ACK, an ACK for another control id, a CA without AA). No patient
data is written (nor the message text).

It stops on SIGTERM/SIGINT, after ``--max-seconds`` or after ``--max-count`` attempts, whichever
comes first, and prints a one-line JSON summary ``{"attempts", "acknowledged", "rejected",
"refused", "errors", "out"}``. It sends only to the address it is given; use loopback or the
lab's own containers.

Library use: :class:`Sender` (a thread), :func:`records`, :func:`acknowledged` and
:func:`unavailability` (the outages of the interface seen in a sender's records).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from pathlib import Path

import ansible.module_utils

ROOT = Path(__file__).resolve().parents[1]
MODULE_UTILS = ROOT / "plugins" / "module_utils"
# hl7_client imports ansible.module_utils.net_checks: let ansible.module_utils.* find the project's
# module_utils too, as Ansible does for a collection (tests/unit/hl7_fixtures.py does the same).
if str(MODULE_UTILS) not in list(ansible.module_utils.__path__):
    ansible.module_utils.__path__.append(str(MODULE_UTILS))

from ansible.module_utils import hl7_client  # noqa: E402

STATUSES = ("acknowledged", "rejected", "refused", "error")
REFUSED_KINDS = ("refused", "timeout", "connection")  # the interface refused, reset or did not answer
REJECT_CODES = ("AE", "AR", "CE", "CR")
PREFIX_RE = re.compile(r"^[A-Za-z0-9]{1,6}$")
MAX_ACCESSION = 16
MESSAGE_CHARS = 200
_DIGITS36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def base36(number: int) -> str:
    """``number`` (>= 0) in base 36, upper case, at least 8 digits (so that accessions sort by time)."""
    out = ""
    while number:
        number, digit = divmod(number, 36)
        out = _DIGITS36[digit] + out
    return out.rjust(8, "0")


def records(path: Path) -> list[dict]:
    """Every attempt in a sender's output file, in file order. A last line cut short (the sender
    killed while writing) is skipped; any other line that is not JSON is an error."""
    out: list[dict] = []
    if not path.exists():
        return out
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for number, line in enumerate(lines, start=1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise
    return out


def acknowledged(path: Path) -> list[dict]:
    """The attempts of a sender's output file that the RIS acknowledged (MSA-1 AA)."""
    return [record for record in records(path) if record.get("status") == "acknowledged"]


def unavailability(attempts: list[dict], interval: float) -> dict:
    """The outages of the interface in a sender's records (as :func:`records` returns them).

    An outage is a run of consecutive attempts that were not acknowledged (rejected, refused or
    error). It lasts from the start of its first attempt to the start of the next acknowledged
    attempt, or, when no attempt was acknowledged after it, to the end of the last attempt (start
    plus latency). ``seconds`` is that length and ``attempts`` the number of failed attempts in it.

    Returns ``{"outages": [{"start", "end", "seconds", "attempts"}], "longest": the longest outage
    or None, "total_seconds", "resolution_seconds"}``. Times are epoch seconds. Each boundary is
    known only to within the sender's ``interval`` (the interface may have gone down up to one
    interval before the first failed attempt, and come back up to one interval before the next
    acknowledged one): ``resolution_seconds`` says so.
    """
    if not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
    ordered = sorted(attempts, key=lambda record: record["t"])
    outages: list[dict] = []
    current: dict | None = None
    for record in ordered:
        if record.get("status") == "acknowledged":
            if current is not None:
                current["end"] = record["t"]
                outages.append(current)
                current = None
        elif current is None:
            current = {"start": record["t"], "end": None, "attempts": 1}
        else:
            current["attempts"] += 1
    if current is not None:
        last = ordered[-1]
        current["end"] = last["t"] + (last.get("latency_ms") or 0.0) / 1000.0
        outages.append(current)
    for outage in outages:
        outage["end"] = round(outage["end"], 3)
        outage["seconds"] = round(max(0.0, outage["end"] - outage["start"]), 3)
    longest = max(outages, key=lambda outage: outage["seconds"], default=None)
    return {
        "outages": outages,
        "longest": longest,
        "total_seconds": round(sum(outage["seconds"] for outage in outages), 3),
        "resolution_seconds": interval,
    }


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def next_stamp(previous: int | None) -> int:
    """The time in milliseconds for the next accession: now, or one more than ``previous`` when
    the clock has not moved past it (two attempts in one millisecond, or a clock set back)."""
    now = int(time.time() * 1000)
    return now if previous is None or now > previous else previous + 1


def last_stamp(path: Path, prefix: str) -> int | None:
    """The highest accession stamp with ``prefix`` in an existing output file (a restart that
    appends to it goes on from there, so that its accessions stay unique)."""
    highest = None
    for record in records(path):
        accession = record.get("accession") or ""
        tail = accession[len(prefix) :]
        if accession.startswith(prefix) and tail and all(ch in _DIGITS36 for ch in tail):
            stamp = int(tail, 36)
            highest = stamp if highest is None else max(highest, stamp)
    return highest


class Sender(threading.Thread):
    """Send a new synthetic ORM^O01 order every ``interval`` seconds until stopped."""

    def __init__(
        self,
        host: str,
        port: int,
        out: Path,
        interval: float = 0.1,
        max_seconds: float = 900.0,
        max_count: int = 10**9,
        timeout: float = 2.0,
        prefix: str = "CUS",
        modality: str = "CT",
        station_aet: str = "UNASSIGNED",
    ):
        super().__init__(daemon=True)
        if not PREFIX_RE.match(prefix):
            raise ValueError(f"prefix must be 1 to 6 letters or digits, got {prefix!r}")
        self.host, self.port, self.out, self.interval = host, port, Path(out), interval
        self.max_seconds, self.max_count, self.timeout = max_seconds, max_count, timeout
        self.prefix, self.modality, self.station_aet = prefix, modality, station_aet
        self.stop_event = threading.Event()
        self.counts = {status: 0 for status in STATUSES}
        self._stamp: int | None = None

    def stop(self) -> None:
        self.stop_event.set()

    def summary(self) -> dict:
        return {
            "attempts": sum(self.counts.values()),
            "acknowledged": self.counts["acknowledged"],
            "rejected": self.counts["rejected"],
            "refused": self.counts["refused"],
            "errors": self.counts["error"],
            "out": str(self.out),
        }

    def new_accession(self) -> str:
        self._stamp = next_stamp(self._stamp)
        return self.prefix + base36(self._stamp)

    def params(self, accession: str) -> dict:
        return hl7_client.with_defaults(
            {
                "host": self.host,
                "port": self.port,
                "timeout": self.timeout,
                "message_type": "ORM^O01",
                "order": {
                    "control": "NW",
                    "accession_number": accession,
                    "modality": self.modality,
                    "station_aetitle": self.station_aet,
                },
            }
        )

    def send_one(self) -> dict:
        accession = self.new_accession()
        control_id = hl7_client.new_control_id()
        record = {
            "t": round(time.time(), 3),
            "accession": accession,
            "control_id": control_id,
            "status": "error",
            "ack": None,
            "latency_ms": None,
            "message": "",
        }
        started = time.monotonic()
        try:
            params = self.params(accession)
            message = hl7_client.build_message(params, control_id)
            ack = hl7_client.send_message(
                self.host, self.port, message, timeout=self.timeout, encoding=params["encoding"], control_id=control_id
            )
            code = ack.get("ack_code")
            record["ack"] = code
            if code == "AA":
                record.update(status="acknowledged", message="")
            elif code in REJECT_CODES:
                record.update(status="rejected", message=_short(ack.get("ack_text") or f"{code} without a text"))
            else:
                record.update(status="error", message=f"{code}: commit accept only, no application accept (AA)")
        except hl7_client.HL7ClientError as exc:
            ack = exc.details.get("ack") or {}
            record["ack"] = ack.get("ack_code")
            closed = exc.kind == "frame" and exc.details.get("received") == 0  # closed without a byte of ACK
            status = "refused" if exc.kind in REFUSED_KINDS or closed else "error"
            record.update(status=status, message=_short(f"{exc.kind}: {exc.msg}"))
        except Exception as exc:  # a sender must survive whatever the RIS does  # noqa: BLE001
            record.update(status="error", message=_short(f"{type(exc).__name__}: {exc}"))
        finally:
            record["latency_ms"] = round((time.monotonic() - started) * 1000.0, 1)
        return record

    def run(self) -> None:
        self._stamp = last_stamp(self.out, self.prefix)
        start = time.monotonic()
        deadline = start + self.max_seconds
        next_at = start
        attempts = 0
        with self.out.open("a", encoding="utf-8") as handle:
            while not self.stop_event.is_set() and time.monotonic() < deadline and attempts < self.max_count:
                record = self.send_one()
                attempts += 1
                self.counts[record["status"]] += 1
                handle.write(json.dumps(record, sort_keys=True) + "\n")
                handle.flush()
                # fixed schedule: the next slot, or now when this attempt overran it (never a burst)
                next_at = max(next_at + self.interval, time.monotonic())
                self.stop_event.wait(max(0.0, min(next_at, deadline) - time.monotonic()))


def _whole(low: int, high: int | None = None):
    """An argparse type: an integer from ``low`` (to ``high``), the error naming the range."""
    wanted = f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value

    return parse


_port = _whole(1, 65535)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds greater than 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds greater than 0, got {text!r}")
    return value


_count = _whole(1)


def _prefix(text: str) -> str:
    if not PREFIX_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"must be 1 to 6 letters or digits (the accession is the prefix and 8 more, at most 16), got {text!r}"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, required=True, help="the RIS's HL7 MLLP port")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per attempt (appended)")
    parser.add_argument("--interval", type=_positive, default=0.1, help="seconds between orders (default 0.1)")
    parser.add_argument("--max-seconds", type=_positive, default=900.0, help="stop after this long (default 900)")
    parser.add_argument("--max-count", type=_count, default=10**9, help="stop after this many attempts")
    parser.add_argument("--timeout", type=_positive, default=2.0, help="seconds for each message and ACK (default 2)")
    parser.add_argument("--prefix", type=_prefix, default="CUS", help="accession number prefix (default CUS)")
    parser.add_argument("--modality", default="CT", help="OBR-24 modality of the orders (default CT)")
    parser.add_argument("--station-aet", default="UNASSIGNED", help="OBR-21 scheduled station AE title")
    args = parser.parse_args(argv)
    if args.timeout > 3600:
        parser.error(f"argument --timeout: must be at most 3600 seconds, got {args.timeout}")
    try:
        hl7_client.validate_host(args.host)
    except hl7_client.HL7ClientError as exc:
        parser.error(f"argument --host: {exc.msg}")
    sender = Sender(
        args.host,
        args.port,
        args.out,
        args.interval,
        args.max_seconds,
        args.max_count,
        args.timeout,
        args.prefix,
        args.modality,
        args.station_aet,
    )
    try:
        hl7_client.validate_options(sender.params(sender.prefix + base36(0)))
    except hl7_client.HL7ClientError as exc:
        option = {"order.modality": "--modality", "order.station_aetitle": "--station-aet"}
        name = next((flag for key, flag in option.items() if exc.msg.startswith(key)), "options")
        parser.error(f"argument {name}: {exc.msg}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sender.stop())
    sender.start()
    while sender.is_alive():
        sender.join(0.2)
    print(json.dumps(sender.summary(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
