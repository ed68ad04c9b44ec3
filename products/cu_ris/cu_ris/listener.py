# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""ris-listener: HL7 v2 over MLLP in, orders stored in SQLite, DICOM worklist entries out.

Every message gets an ACK:

- AA: accepted. An order (ORM^O01) is answered AA only once its row is committed to the database
  and its worklist entry written (an AA means the order is stored); ADT^A01/A04/A08 are accepted
  without a change.
- AE: application error, with MSA-3 text and an ERR segment: a required field is missing or not
  valid, the order is unknown (XO, CA) or already exists (NW), or the worklist entry or the
  database could not be written; then nothing of the order is applied.
- AR: rejected: not HL7, no control id, an unsupported message type, version or order control
  (release 1.0 handles NW and CA; release 1.1 also XO), a frame larger than --max-frame-bytes
  (answered, then the connection is closed).

Order controls (ORC-1): NW stores a new scheduled order and writes ``<accession>.wl``; CA marks it
cancelled and removes the entry; XO (schema 2, release 1.1) changes a scheduled order (patient,
modality, station, scheduled time, procedure), increments its revision and rewrites the entry.
A message identical to the one stored for its order (same control id) is a retransmission:
answered AA again, nothing changes. Each change is one transaction: the row is written, the entry
written or removed, then the transaction is committed; a failure rolls back both.

The listener refuses to start (exit 78) on a missing database or one whose schema is not the
release's. Transport: a frame ends at 0x1c; at most --max-connections connections at once, more are
closed at once. Logs never carry patient names or identifiers: they are replaced by ``***``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import socketserver
import sqlite3
import sys
import threading
import time

from cu_ris import EX_CONFIG, ConfigError
from cu_ris import store as order_store
from cu_ris.message import (
    SUPPORTED_VERSIONS,
    Message,
    Reject,
    accession_of,
    build_ack,
    mask,
    order_values,
)
from cu_ris.release import Release
from cu_ris.worklist import Worklist, worklist_dump

SB = b"\x0b"
EB = b"\x1c"
CR = b"\x0d"

LOG = logging.getLogger("cu_ris.listener")

ADT_EVENTS = ("A01", "A04", "A08")
CONTROL_TOKEN = re.compile(r"^[A-Z]{2}$")
DRAIN_SECONDS = 2.0


# --------------------------------------------------------------------------
# Message handling
# --------------------------------------------------------------------------


class Processor:
    """Turns one HL7 payload into one ACK; orders go through the store and the worklist, one at a time."""

    def __init__(self, store, worklist, release, application="RIS", facility="RADIOLOGY", default_station_aet=""):
        self.store = store
        self.worklist = worklist
        self.release = release
        self.application = application
        self.facility = facility
        self.default_station_aet = default_station_aet or "UNASSIGNED"
        self.lock = threading.Lock()
        self.controls = ("NW", "XO", "CA") if release.schema >= 2 else ("NW", "CA")

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
                note = self.order(msg, text, control_id)
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
                "internal error while processing the message; the order is not stored",
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

    def order(self, msg, text, control_id):
        for name in ("ORC", "OBR", "PID"):
            if msg.segment(name) is None:
                raise Reject("AE", f"{name} segment is required in ORM^O01", "100", name)
        control = msg.field("ORC", 1).strip().upper()
        if control not in self.controls:
            shown = control if CONTROL_TOKEN.match(control) else repr(control[:4])
            handled = ", ".join(self.controls[:-1]) + " and " + self.controls[-1]
            raise Reject("AR", f"unsupported order control {shown} (this release handles {handled})", "200", "ORC^1^1")
        accession, location, label = accession_of(msg)
        values = order_values(msg, accession, self.default_station_aet) if control in ("NW", "XO") else None
        with self.lock:
            note = self._apply(control, accession, (location, label), values, text, control_id)
        LOG.info(
            "control_id=%s ORM %s accession=%s patient=%s: %s",
            control_id,
            control,
            mask(accession),
            mask(msg.field("PID", 3, 1)),
            note,
        )
        return f"order {control}: {note}"

    def _apply(self, control, accession, where, values, text, control_id):
        """One transaction: the row, then the worklist entry, then COMMIT; any failure undoes both."""
        store = self.store
        undo = None
        try:
            store.begin()
        except order_store.StoreError as exc:
            raise Reject("AE", f"{exc}; the order is not stored", "207") from None
        try:
            row = store.get(accession)
            now = order_store.utc_now()
            if row is not None and row["message"] == text and row["control_id"] == control_id:
                note, undo = self._retransmission(row)
            elif control == "NW":
                note, undo = self._new(row, accession, where, values, text, control_id, now)
            elif control == "XO":
                note, undo = self._change(row, accession, where, values, text, control_id, now)
            else:
                note, undo = self._cancel(row, accession, where, text, control_id, now)
            store.commit()
            return note
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                store.rollback()
            if undo is not None:
                try:
                    undo()
                except Exception as undo_exc:  # the entry may now differ from the store: say so loudly
                    LOG.error(
                        "accession=%s: the worklist entry could not be put back after a failed commit (%s); "
                        "it may not match the database",
                        mask(accession),
                        type(undo_exc).__name__,
                    )
            if isinstance(exc, order_store.StoreError):
                raise Reject("AE", f"{exc}; the order is not stored", "207") from None
            if isinstance(exc, sqlite3.Error):
                LOG.error("accession=%s: database error %s", mask(accession), exc)
                raise Reject("AE", "the order database could not store the order; it is not stored", "207") from None
            raise

    def _retransmission(self, row):
        if row["status"] == "scheduled":
            undo = self.worklist.put(row["accession"], worklist_dump(row))
            return f"already stored (a retransmission of {row['control_id']}); nothing changed", undo
        _, undo = self.worklist.delete(row["accession"])
        return f"already cancelled (a retransmission of {row['control_id']}); nothing changed", undo

    def _new(self, row, accession, where, values, text, control_id, now):
        location, label = where
        if row is not None and row["status"] == "scheduled":
            fix = (
                "send XO to change it"
                if "XO" in self.controls
                else "cancel it (CA) and order again with a new accession number"
            )
            raise Reject("AE", f"{label} accession number belongs to a scheduled order: {fix}", "205", location)
        if row is not None:
            raise Reject(
                "AE",
                f"{label} accession number belongs to a cancelled order: a new order needs a new accession number",
                "205",
                location,
            )
        row = self.store.insert(accession, values, text, control_id, now)
        return "stored, worklist entry scheduled", self.worklist.put(accession, worklist_dump(row))

    def _change(self, row, accession, where, values, text, control_id, now):
        location, label = where
        if row is None or row["status"] != "scheduled":
            state = "no order has" if row is None else "only a cancelled order has"
            raise Reject(
                "AE",
                f"unknown order: {state} this {label} accession number (XO changes a scheduled order)",
                "204",
                location,
            )
        row = self.store.change(accession, values, text, control_id, now)
        undo = self.worklist.put(accession, worklist_dump(row))
        return f"revision {row['revision']} stored, worklist entry rewritten", undo

    def _cancel(self, row, accession, where, text, control_id, now):
        location, label = where
        if row is None:
            raise Reject(
                "AE",
                f"unknown order: no order has this {label} accession number (CA cancels a stored order)",
                "204",
                location,
            )
        if row["status"] == "cancelled":
            _, undo = self.worklist.delete(accession)
            return "already cancelled; nothing changed", undo
        self.store.cancel(accession, text, control_id, now)
        removed, undo = self.worklist.delete(accession)
        return "cancelled, worklist entry " + ("removed" if removed else "was not present"), undo


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
    p = argparse.ArgumentParser(prog="ris-listener", description=__doc__.split("\n")[0])
    p.add_argument("--db", required=True, help="the order database (created by bin/ris-migrate, never by the listener)")
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


def main(argv=None, root=None):
    """Run the listener of the release at ``root`` (the directory holding release.json and bin/)."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        release = Release.load(root)
        store = order_store.open_for_listener(args.db, release)
    except ConfigError as exc:
        print(f"ris-listener: {exc}", file=sys.stderr)
        return EX_CONFIG
    if not os.access(args.dump2dcm, os.X_OK):
        LOG.error("dump2dcm not found or not executable at %s", args.dump2dcm)
        return 2
    worklist = Worklist(args.worklist_dir, args.dump2dcm)
    processor = Processor(store, worklist, release, args.application, args.facility, args.default_station_aet)
    server = MLLPServer(
        (args.host, args.port), processor, args.idle_timeout, args.max_frame_bytes, args.max_connections
    )
    host, port = server.server_address[:2]

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info(
        "cu-ris %s (schema %d) listening on %s:%s, database %s, worklist %s",
        release.version,
        release.schema,
        host,
        port,
        args.db,
        worklist.directory,
    )
    print(f"READY {host} {port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        store.conn.close()
    LOG.info("stopped")
    return 0
