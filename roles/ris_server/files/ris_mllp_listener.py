#!/usr/bin/python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""HL7 v2 MLLP listener for the RIS endpoint: orders in, worklist entries out.

Installed by the ris_server role. Standard library only (no pip packages on
the host). Every message gets an ACK:

- AA: accepted (ORM^O01 with ORC-1 NW/XO/CA/DC, ADT^A01/A04/A08);
- AE: application error, with MSA-3 text and an ERR segment (a required field
  is missing or invalid, the worklist file could not be written);
- AR: rejected (not HL7, no control id, unsupported message type or version).

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

Logs never carry patient names or identifiers: they are masked.
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
import uuid

SB = b"\x0b"
EB = b"\x1c"
CR = b"\x0d"

LOG = logging.getLogger("ris_mllp_listener")

SUPPORTED_VERSIONS = re.compile(r"^2\.[1-9](\.\d+)?$")
ADT_EVENTS = ("A01", "A04", "A08")
SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,16}$")


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
        self.segments = []
        for line in lines:
            fields = line.split(self.fs)
            if fields[0] == "MSH":
                fields = ["MSH", self.fs] + fields[1:]
            self.segments.append(fields)

    def segment(self, name):
        return next((s for s in self.segments if s[0] == name), None)

    def field(self, name, index, component=None):
        seg = self.segment(name)
        if seg is None or index >= len(seg):
            return ""
        value = seg[index].split(self.rs)[0]
        if component is not None:
            parts = value.split(self.cs)
            value = parts[component - 1] if component - 1 < len(parts) else ""
        return self.unescape(value)

    def unescape(self, value):
        e = self.esc
        if not e or e not in value:
            return value
        table = {"F": self.fs, "S": self.cs, "R": self.rs, "E": e, "T": "&"}
        return re.sub(re.escape(e) + r"([FSRET])" + re.escape(e), lambda m: table[m.group(1)], value)


def mask(value, keep=2):
    if not value:
        return "-"
    return value[:keep] + "***"


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
        trigger = parts[1] if len(parts) > 1 else ""
        version = msh[12] if len(msh) > 12 and msh[12] else version
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
    if vr in ("CS", "AE", "SH", "LO", "DA", "TM", "UI"):
        value = value.replace("^", " ")
    if vr == "CS":
        value = re.sub(r"[^A-Z0-9 _]", "", value.upper())
    if vr in ("DA", "TM", "UI"):
        value = re.sub(r"[^0-9.]", "", value)
    return value.strip()[: VR_MAX.get(vr, 64)]


def uid_for(accession):
    return "2.25.{}".format(uuid.uuid5(uuid.NAMESPACE_OID, "clinical-upgrade-ris:" + accession).int)


def scheduled_datetime(msg):
    for value in (msg.field("OBR", 36), msg.field("OBR", 27, 4), msg.field("ORC", 7, 4), msg.field("OBR", 7)):
        digits = re.sub(r"[^0-9]", "", value.split(msg.cs)[0])
        if len(digits) >= 8:
            return digits[:8], (digits[8:14] or "000000").ljust(4, "0")
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def worklist_dump(msg, accession, default_station_aet="UNASSIGNED"):
    patient_id = msg.field("PID", 3, 1)
    if not patient_id:
        raise Reject("AE", "PID-3 patient identifier is required for an order", "101", "PID^1^3")
    name = msg.field("PID", 5)
    name = msg.cs.join(name.split(msg.cs)[:5]).replace(msg.cs, "^") if name else ""
    birth = re.sub(r"[^0-9]", "", msg.field("PID", 7, 1))[:8]
    sex = msg.field("PID", 8)[:1].upper()
    if sex not in ("M", "F", "O"):
        sex = ""
    code = msg.field("OBR", 4, 1)
    desc = msg.field("OBR", 4, 2) or code
    rp_id = msg.field("OBR", 19, 1) or "RP" + accession[-14:]
    sps_id = msg.field("OBR", 20, 1) or "SPS" + accession[-13:]
    station = msg.field("OBR", 21, 1) or default_station_aet or "UNASSIGNED"
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
            version = msh[12].split(msg.cs)[0] if len(msh) > 12 else ""
            if not SUPPORTED_VERSIONS.match(version):
                raise Reject("AR", f"unsupported HL7 version {version[:10]!r} (2.x expected)", "203", "MSH^1^12")
            mtype = msh[9].split(msg.cs) if len(msh) > 9 else [""]
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


class MLLPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        server = self.server
        sock.settimeout(server.idle_timeout)
        buf = bytearray()
        peer = "{}:{}".format(*self.client_address[:2])
        while True:
            try:
                chunk = sock.recv(4096)
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
                end = buf.find(EB + CR)
                if end < 0:
                    if len(buf) > server.max_frame_bytes:
                        LOG.warning("peer %s: MLLP frame larger than %d bytes; closing", peer, server.max_frame_bytes)
                        return
                    break
                payload = bytes(buf[1:end])
                del buf[: end + 2]
                ack = server.processor.handle(payload)
                try:
                    sock.sendall(SB + ack.encode("utf-8") + EB + CR)
                except OSError:
                    return


class MLLPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, processor, idle_timeout=60.0, max_frame_bytes=1024 * 1024):
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, MLLPHandler)
        self.processor = processor
        self.idle_timeout = idle_timeout
        self.max_frame_bytes = max_frame_bytes


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
    p.add_argument("--idle-timeout", type=float, default=60.0)
    p.add_argument("--max-frame-bytes", type=int, default=1024 * 1024)
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
    server = MLLPServer((args.host, args.port), processor, args.idle_timeout, args.max_frame_bytes)
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
