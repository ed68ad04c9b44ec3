#!/usr/bin/python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""HL7 v2 MLLP listener for the RIS endpoint: orders in, worklist entries out.

Installed by the ris_server role. Standard library only (no pip packages on
the host). Every message gets an ACK:

- AA: accepted (ORM^O01 with ORC-1 NW/XO/CA/DC, ADT^A01/A04/A08);
- AE: application error, with MSA-3 text and an ERR segment (a required field
  is missing or invalid, the worklist file could not be written);
- AR: rejected (not HL7, no control id, unsupported message type or version,
  a frame larger than --max-frame-bytes: answered, then the connection is closed).

An ORM^O01 with ORC-1 NW (or XO) becomes a DICOM modality worklist entry: a
DCMTK dump is written and converted with ``dump2dcm`` to a temporary file in
the worklist directory, then renamed to ``<accession>.wl`` while holding the
worklist ``lockfile`` (the same lock wlmscpfs takes), so that wlmscpfs never
reads a half-written entry. ORC-1 CA (or DC) removes the entry.

Field mapping: PID-3 patient id, PID-5 name, PID-7 birth date, PID-8 sex,
ORC-1 order control, ORC-2 placer order number, OBR-4 procedure
code^description, OBR-18 accession number (fallback ORC-3, then ORC-2),
OBR-19 requested procedure id, OBR-20 scheduled procedure step id, OBR-21
scheduled station AE title, OBR-24 modality, OBR-36 scheduled date/time
(fallback OBR-27.4, then OBR-7).

Field values are unescaped (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\) after they are split into
components. Dates are checked: an order whose scheduled date/time or PID-7 birth
date is not a real date is answered AE with an ERR naming the field.

Transport: a frame ends at 0x1c (the 0x0d after it is expected but not waited
for); at most --max-connections connections are served at once, and a
connection over that limit is closed at once, without reading from it.

Logs never carry patient names or identifiers: they are replaced by ``***``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import uuid

SB = b"\x0b"
EB = b"\x1c"
CR = b"\x0d"

LOG = logging.getLogger("ris_mllp_listener")

SUPPORTED_VERSIONS = re.compile(r"^2\.[1-9](\.\d+)?$")
ADT_EVENTS = ("A01", "A04", "A08")
SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,16}$")
# HL7 DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]; a worklist entry needs at least the day.
DTM = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,4})?)?)?)?(?:[+-]\d{4})?$")
DRAIN_SECONDS = 2.0


class Reject(Exception):
    """A message to answer with AE or AR."""

    def __init__(self, code, text, err_code, location=""):
        super().__init__(text)
        self.code = code
        self.text = text
        self.err_code = err_code
        self.location = location


# --------------------------------------------------------------------------
# HL7 parsing
# --------------------------------------------------------------------------


class Message:
    def __init__(self, text):
        lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
        if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
            raise Reject("AR", "message does not start with an MSH segment", "100", "MSH")
        self.fs = lines[0][3]
        if self.fs.isalnum() or self.fs.isspace():
            raise Reject("AR", "MSH-1 field separator is not valid", "102", "MSH^1^1")
        enc = lines[0].split(self.fs)[1]
        self.cs = enc[0] if len(enc) > 0 else "^"
        self.rs = enc[1] if len(enc) > 1 else "~"
        self.esc = enc[2] if len(enc) > 2 else "\\"
        self.ss = enc[3] if len(enc) > 3 else "&"
        self.segments = []
        for line in lines:
            fields = line.split(self.fs)
            if fields[0] == "MSH":
                fields = ["MSH", self.fs] + fields[1:]
            self.segments.append(fields)

    def segment(self, name):
        return next((s for s in self.segments if s[0] == name), None)

    def components(self, name, index):
        """The unescaped components of the first repetition of a field (split first, then unescaped)."""
        seg = self.segment(name)
        if seg is None or index >= len(seg):
            return []
        return [self.unescape(part) for part in seg[index].split(self.rs)[0].split(self.cs)]

    def field(self, name, index, component=None):
        parts = self.components(name, index)
        if component is None:
            return self.cs.join(parts)
        return parts[component - 1] if component - 1 < len(parts) else ""

    def unescape(self, value):
        e = self.esc
        if not e or e not in value:
            return value
        table = {"F": self.fs, "S": self.cs, "R": self.rs, "E": e, "T": self.ss}
        return re.sub(re.escape(e) + r"([FSRET])" + re.escape(e), lambda m: table[m.group(1)], value)


def mask(value):
    """A patient or study identifier in a log line: a fixed ``***`` (neither its start nor its length)."""
    return "***" if value else "-"


def valid_dtm(value):
    """(date, time) of an HL7 DTM with at least a day, or None when it is not a real date and time."""
    match = DTM.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    if year < 1900:
        return None
    return value[:8], (match.group(4) or "00") + (match.group(5) or "00") + (match.group(6) or "00")


# --------------------------------------------------------------------------
# ACK building
# --------------------------------------------------------------------------


def hl7_escape(text):
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def build_ack(msg, code, control_id, text="", err_code="", location="", application="RIS", facility="RADIOLOGY"):
    now = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
    trigger = ""
    version = "2.5.1"
    receiving_app = receiving_fac = ""
    if msg is not None:
        msh = msg.segment("MSH")
        mtype = msh[9] if len(msh) > 9 else ""
        parts = mtype.split(msg.cs)
        trigger = parts[1].strip() if len(parts) > 1 else ""
        sent_version = msh[12].split(msg.cs)[0].strip() if len(msh) > 12 else ""
        version = sent_version if SUPPORTED_VERSIONS.match(sent_version) else version
        receiving_app = msh[3] if len(msh) > 3 else ""
        receiving_fac = msh[4] if len(msh) > 4 else ""
    ack_type = f"ACK^{trigger}^ACK" if trigger else "ACK"
    segments = [
        "|".join(
            [
                "MSH",
                "^~\\&",
                application,
                facility,
                receiving_app,
                receiving_fac,
                now,
                "",
                ack_type,
                "ACK" + uuid.uuid4().hex[:17].upper(),
                "P",
                version,
            ]
        ),
        f"MSA|{code}|{control_id}|{hl7_escape(text)}",
    ]
    if err_code:
        severity = "E"
        segments.append(f"ERR||{location}|{err_code}^{hl7_escape(text)}^HL70357|{severity}")
    return "\r".join(segments)


# --------------------------------------------------------------------------
# Worklist entries
# --------------------------------------------------------------------------

VR_MAX = {"AE": 16, "CS": 16, "DA": 8, "LO": 64, "PN": 64, "SH": 16, "TM": 14, "UI": 64}


def dicom_value(value, vr):
    """Make a value safe for a DCMTK dump line and the given VR."""
    value = "".join(ch for ch in value if ch >= " " and ch not in "[]\\\x7f")
    if vr == "CS":
        value = re.sub(r"[^A-Z0-9 _]", "", value.upper())
    if vr in ("DA", "TM", "UI"):
        value = re.sub(r"[^0-9.]", "", value)
    return value.strip()[: VR_MAX.get(vr, 64)]


def uid_for(accession):
    return "2.25.{}".format(uuid.uuid5(uuid.NAMESPACE_OID, "clinical-upgrade-ris:" + accession).int)


def scheduled_datetime(msg):
    """Date and time of the first non-empty of OBR-36, OBR-27.4, ORC-7.4, OBR-7; now when all are empty.

    The first non-empty one must be a real date (and time): else Reject AE naming that field.
    """
    candidates = (("OBR", 36, 1), ("OBR", 27, 4), ("ORC", 7, 4), ("OBR", 7, 1))
    for seg, index, component in candidates:
        value = msg.field(seg, index, component).split(msg.ss)[0].strip()
        if not value:
            continue
        found = valid_dtm(value)
        if found is None:
            where = f"{seg}-{index}" + (f".{component}" if component > 1 else "")
            location = f"{seg}^1^{index}" + (f"^1^{component}" if component > 1 else "")
            raise Reject(
                "AE",
                f"{where} scheduled date/time {value[:26]!r} is not a real date and time "
                "(YYYYMMDD[HHMM[SS]], a day the month has, hour 00-23, minutes and seconds 00-59)",
                "102",
                location,
            )
        return found
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def birth_date(msg):
    """PID-7 as YYYYMMDD ('' when empty); Reject AE when it is not a real date (the value is not echoed)."""
    value = msg.field("PID", 7, 1).split(msg.ss)[0].strip()
    if not value:
        return ""
    found = valid_dtm(value)
    if found is None:
        raise Reject(
            "AE", "PID-7 date of birth is not a real date (YYYYMMDD); the value is not shown", "102", "PID^1^7"
        )
    return found[0]


def station_aetitle(msg, default):
    """OBR-21.1 as a DICOM AE title (1 to 16 characters, no backslash or control character); the default when empty."""
    value = msg.field("OBR", 21, 1).strip()
    if not value:
        return default or "UNASSIGNED"
    if len(value) > 16 or any(ch in "\\[]\x7f" or ch < " " for ch in value):
        raise Reject(
            "AE",
            f"OBR-21 scheduled station AE title {value[:20]!r} is not usable: 1 to 16 characters, no backslash "
            "or control characters (a DICOM AE title), and no [ or ] (the worklist dump cannot carry them)",
            "102",
            "OBR^1^21",
        )
    return value


def worklist_dump(msg, accession, default_station_aet="UNASSIGNED"):
    patient_id = msg.field("PID", 3, 1)
    if not patient_id:
        raise Reject("AE", "PID-3 patient identifier is required for an order", "101", "PID^1^3")
    name = "^".join(part.replace("^", " ") for part in msg.components("PID", 5)[:5]).rstrip("^")
    birth = birth_date(msg)
    sex = msg.field("PID", 8)[:1].upper()
    if sex not in ("M", "F", "O"):
        sex = ""
    code = msg.field("OBR", 4, 1)
    desc = msg.field("OBR", 4, 2) or code
    rp_id = msg.field("OBR", 19, 1) or "RP" + accession[-14:]
    sps_id = msg.field("OBR", 20, 1) or "SPS" + accession[-13:]
    station = station_aetitle(msg, default_station_aet)
    modality = msg.field("OBR", 24, 1) or "OT"
    date, time_ = scheduled_datetime(msg)
    lines = [
        ("0008,0005", "CS", "ISO_IR 192"),
        ("0008,0050", "SH", accession),
        ("0010,0010", "PN", name),
        ("0010,0020", "LO", patient_id),
        ("0010,0030", "DA", birth),
        ("0010,0040", "CS", sex),
        ("0020,000d", "UI", uid_for(accession)),
        ("0032,1060", "LO", desc),
        ("0040,0100", "SQ", None),
        ("fffe,e000", "-", None),
        ("0008,0060", "CS", modality),
        ("0040,0001", "AE", station),
        ("0040,0002", "DA", date),
        ("0040,0003", "TM", time_),
        ("0040,0006", "PN", ""),
        ("0040,0007", "LO", desc),
        ("0040,0009", "SH", sps_id),
        ("0040,0010", "SH", ""),
        ("0040,0011", "SH", ""),
        ("0040,0020", "CS", "SCHEDULED"),
        ("fffe,e00d", "-", None),
        ("fffe,e0dd", "-", None),
        ("0040,1001", "SH", rp_id),
        ("0040,1003", "SH", "MEDIUM"),
        ("0008,1110", "SQ", None),
        ("fffe,e0dd", "-", None),
        ("0008,0090", "PN", ""),
        ("0040,2016", "LO", msg.field("ORC", 2, 1)),
    ]
    out = []
    for tag, vr, value in lines:
        if value is None:
            out.append(f"({tag}) {vr}")
        else:
            out.append(f"({tag}) {vr} [{dicom_value(value, vr)}]")
    return "\n".join(out) + "\n"


class Worklist:
    def __init__(self, directory, dump2dcm):
        self.directory = os.path.abspath(directory)
        self.dump2dcm = dump2dcm
        self.lock = threading.Lock()
        os.makedirs(self.directory, exist_ok=True)
        self.lockfile = os.path.join(self.directory, "lockfile")
        if not os.path.exists(self.lockfile):
            with open(self.lockfile, "a"):
                pass

    def path(self, accession):
        return os.path.join(self.directory, accession + ".wl")

    def _locked(self):
        fd = os.open(self.lockfile, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def write(self, accession, dump_text):
        with self.lock:
            fd, dump_path = tempfile.mkstemp(prefix=".order-", suffix=".dump", dir=self.directory)
            tmp_wl = dump_path[: -len(".dump")] + ".tmp"
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(dump_text)
                proc = subprocess.run(
                    [self.dump2dcm, "-q", dump_path, tmp_wl],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                if proc.returncode != 0 or not os.path.exists(tmp_wl):
                    raise Reject(
                        "AE",
                        f"worklist entry could not be created (dump2dcm exit {proc.returncode})",
                        "207",
                    )
                os.chmod(tmp_wl, 0o644)
                lock_fd = self._locked()
                try:
                    os.replace(tmp_wl, self.path(accession))
                finally:
                    fcntl.flock(lock_fd, fcntl.LOCK_UN)
                    os.close(lock_fd)
            finally:
                for leftover in (dump_path, tmp_wl):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)

    def remove(self, accession):
        with self.lock:
            lock_fd = self._locked()
            try:
                os.unlink(self.path(accession))
                return True
            except FileNotFoundError:
                return False
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
                os.close(lock_fd)


# --------------------------------------------------------------------------
# Message handling
# --------------------------------------------------------------------------


class Processor:
    def __init__(self, worklist, application="RIS", facility="RADIOLOGY", default_station_aet="UNASSIGNED"):
        self.worklist = worklist
        self.application = application
        self.facility = facility
        self.default_station_aet = default_station_aet

    def handle(self, payload):
        """Return the ACK text for one message payload (bytes)."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = payload.decode("latin-1")
        msg = None
        control_id = ""
        try:
            msg = Message(text)
            msh = msg.segment("MSH")
            control_id = msh[10] if len(msh) > 10 else ""
            if not control_id:
                raise Reject("AR", "MSH-10 message control id is required", "101", "MSH^1^10")
            version = msh[12].split(msg.cs)[0].strip() if len(msh) > 12 else ""
            if not SUPPORTED_VERSIONS.match(version):
                raise Reject("AR", f"unsupported HL7 version {version[:10]!r} (2.x expected)", "203", "MSH^1^12")
            mtype = [part.strip() for part in msh[9].split(msg.cs)] if len(msh) > 9 else [""]
            kind = mtype[0]
            event = mtype[1] if len(mtype) > 1 else ""
            if kind == "ORM" and event == "O01":
                note = self.order(msg, control_id)
            elif kind == "ADT" and event in ADT_EVENTS:
                note = f"ADT {event} accepted (no worklist change)"
                LOG.info("control_id=%s %s patient=%s", control_id, note, mask(msg.field("PID", 3, 1)))
            else:
                raise Reject(
                    "AR",
                    f"unsupported message type {kind[:3]}^{event[:3]} (this RIS takes ORM^O01 and ADT^A01/A04/A08)",
                    "200",
                    "MSH^1^9",
                )
            return build_ack(msg, "AA", control_id, note, application=self.application, facility=self.facility)
        except Reject as rej:
            LOG.warning("control_id=%s answered %s: %s", control_id or "-", rej.code, rej.text)
            return build_ack(
                msg,
                rej.code,
                control_id,
                rej.text,
                rej.err_code,
                rej.location,
                application=self.application,
                facility=self.facility,
            )
        except Exception as exc:  # keep answering; never crash the listener on one message
            LOG.error("control_id=%s internal error: %s", control_id or "-", type(exc).__name__)
            return build_ack(
                msg,
                "AE",
                control_id,
                "internal error while processing the message",
                "207",
                application=self.application,
                facility=self.facility,
            )

    def too_large(self, head, limit):
        """The AR for a frame larger than ``limit`` bytes; ``head`` is its start (the MSH segment if complete)."""
        msg = None
        control_id = ""
        first, complete, _ = head.partition(b"\r")
        if complete:
            with contextlib.suppress(Reject, UnicodeDecodeError):
                msg = Message(first.decode("utf-8", "replace"))
                msh = msg.segment("MSH")
                control_id = msh[10].strip() if len(msh) > 10 else ""
        LOG.warning("control_id=%s answered AR: message larger than %d bytes", control_id or "-", limit)
        return build_ack(
            msg,
            "AR",
            control_id,
            f"message larger than {limit} bytes (the listener's --max-frame-bytes); refused, the connection is closed",
            "207",
            "MSH",
            application=self.application,
            facility=self.facility,
        )

    def order(self, msg, control_id):
        if msg.segment("ORC") is None:
            raise Reject("AE", "ORC segment is required in ORM^O01", "100", "ORC")
        if msg.segment("OBR") is None:
            raise Reject("AE", "OBR segment is required in ORM^O01", "100", "OBR")
        if msg.segment("PID") is None:
            raise Reject("AE", "PID segment is required in ORM^O01", "100", "PID")
        control = msg.field("ORC", 1).strip().upper()
        accession = msg.field("OBR", 18, 1) or msg.field("ORC", 3, 1) or msg.field("ORC", 2, 1)
        if not accession:
            raise Reject("AE", "OBR-18 accession number (or ORC-3/ORC-2) is required", "101", "OBR^1^18")
        if not SAFE_ID.match(accession):
            raise Reject(
                "AE",
                "accession number must be 1 to 16 letters, digits, '.', '_' or '-'",
                "102",
                "OBR^1^18",
            )
        patient = mask(msg.field("PID", 3, 1))
        if control in ("NW", "XO"):
            dump = worklist_dump(msg, accession, self.default_station_aet)
            self.worklist.write(accession, dump)
            LOG.info(
                "control_id=%s ORM %s accession=%s patient=%s: worklist entry written",
                control_id,
                control,
                mask(accession),
                patient,
            )
            return f"order {control}: worklist entry scheduled"
        if control in ("CA", "DC"):
            removed = self.worklist.remove(accession)
            LOG.info(
                "control_id=%s ORM %s accession=%s patient=%s: worklist entry %s",
                control_id,
                control,
                mask(accession),
                patient,
                "removed" if removed else "was not present",
            )
            return "order {}: worklist entry {}".format(control, "removed" if removed else "was not present")
        raise Reject("AE", f"unsupported order control ORC-1 {control[:4]!r} (NW, XO, CA, DC)", "207", "ORC^1^1")


# --------------------------------------------------------------------------
# MLLP server
# --------------------------------------------------------------------------


def close_after_answer(sock, seconds=DRAIN_SECONDS):
    """Half-close, then read and discard what the peer still sends (up to ``seconds``), then close.

    Closing a socket with unread data sends a reset, which can destroy the answer before the peer
    reads it; draining first lets the peer read the answer and see the end of the connection.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            if not sock.recv(65536):
                break


class MLLPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        server = self.server
        sock.settimeout(server.idle_timeout)
        buf = bytearray()
        peer = "{}:{}".format(*self.client_address[:2])
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if buf:
                    LOG.warning("peer %s: incomplete MLLP frame dropped after idle timeout", peer)
                return
            except OSError:
                return
            if not chunk:
                if buf.strip(b"\r\n"):
                    LOG.warning("peer %s closed the connection inside an MLLP frame", peer)
                return
            buf.extend(chunk)
            while True:
                start = buf.find(SB)
                if start < 0:
                    if buf.strip(b"\r\n"):
                        LOG.warning("peer %s: %d bytes outside an MLLP frame discarded", peer, len(buf))
                    buf.clear()
                    break
                if start > 0:
                    if bytes(buf[:start]).strip(b"\r\n"):
                        LOG.warning("peer %s: %d bytes before the MLLP start block discarded", peer, start)
                    del buf[:start]
                # The frame ends at 0x1c; its 0x0d is consumed when it is there, and skipped as
                # inter-frame noise when it comes later (a peer that never sends it is answered too).
                end = buf.find(EB, 1)
                size = (end if end >= 0 else len(buf)) - 1
                if size > server.max_frame_bytes:
                    LOG.warning("peer %s: MLLP frame larger than %d bytes; answered AR, closing", peer, size)
                    ack = server.processor.too_large(bytes(buf[1 : 1 + 65536]), server.max_frame_bytes)
                    with contextlib.suppress(OSError):
                        sock.sendall(SB + ack.encode("utf-8") + EB + CR)
                    close_after_answer(sock)
                    return
                if end < 0:
                    break
                payload = bytes(buf[1:end])
                del buf[: end + 1]
                if buf[:1] == CR:
                    del buf[:1]
                ack = server.processor.handle(payload)
                try:
                    sock.sendall(SB + ack.encode("utf-8") + EB + CR)
                except OSError:
                    return


class MLLPServer(socketserver.ThreadingTCPServer):
    """One thread per connection, at most ``max_connections`` at once; the rest are closed at once."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, processor, idle_timeout=60.0, max_frame_bytes=1024 * 1024, max_connections=64):
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, MLLPHandler)
        self.processor = processor
        self.idle_timeout = idle_timeout
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
        self.slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0
        self.refused_logged_at = None

    def verify_request(self, request, client_address):
        """Take a connection slot; without one, refuse (socketserver then closes the connection at once)."""
        if self.slots.acquire(blocking=False):
            return True
        self.refused += 1
        now = time.monotonic()
        if self.refused_logged_at is None or now - self.refused_logged_at >= 10:
            LOG.warning(
                "refused %d connection(s), the latest from %s: %d connections open (--max-connections); "
                "refused connections are closed at once",
                self.refused,
                client_address[0],
                self.max_connections,
            )
            self.refused = 0
            self.refused_logged_at = now
        return False

    def process_request(self, request, client_address):
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104
    p.add_argument("--port", type=int, default=2575, help="TCP port (0 picks a free one; default 2575)")
    p.add_argument("--worklist-dir", required=True, help="wlmscpfs AE directory, e.g. /var/lib/ris/worklist/RIS1")
    p.add_argument("--dump2dcm", default=shutil.which("dump2dcm") or "/usr/bin/dump2dcm")
    p.add_argument("--application", default="RIS", help="MSH-3 of the ACKs")
    p.add_argument("--facility", default="RADIOLOGY", help="MSH-4 of the ACKs")
    p.add_argument(
        "--default-station-aet",
        default="UNASSIGNED",
        help="scheduled station AE title when OBR-21 is empty (wlmscpfs rejects entries without one)",
    )
    p.add_argument("--idle-timeout", type=float, default=60.0, help="seconds a connection may stay silent (60)")
    p.add_argument(
        "--max-frame-bytes",
        type=positive_int,
        default=1024 * 1024,
        help="largest message; a larger frame is answered AR and the connection closed (default 1 MiB)",
    )
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=64,
        help="connections served at once, one thread each; more are closed at once (default 64)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if not os.access(args.dump2dcm, os.X_OK):
        LOG.error("dump2dcm not found or not executable at %s", args.dump2dcm)
        return 2
    worklist = Worklist(args.worklist_dir, args.dump2dcm)
    processor = Processor(worklist, args.application, args.facility, args.default_station_aet)
    server = MLLPServer(
        (args.host, args.port), processor, args.idle_timeout, args.max_frame_bytes, args.max_connections
    )
    host, port = server.server_address[:2]

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info("listening on %s:%s, worklist %s", host, port, worklist.directory)
    print(f"READY {host} {port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
