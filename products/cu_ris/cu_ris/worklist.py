# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""DICOM modality worklist entries for DCMTK wlmscpfs, derived from an order row.

An entry is a DCMTK dump converted with ``dump2dcm`` to a temporary file in the worklist
directory, then renamed to ``<accession>.wl`` while holding the worklist ``lockfile`` (the lock
wlmscpfs takes), so that wlmscpfs never reads a half-written entry. ``put`` and ``delete`` return
an ``undo`` that puts the previous bytes back: the listener calls it when the database
transaction that goes with the change cannot commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import tempfile
import threading

from cu_ris.message import Message, Reject, worklist_extras

VR_MAX = {"AE": 16, "CS": 16, "DA": 8, "LO": 64, "PN": 64, "SH": 16, "TM": 14, "UI": 64}


def dicom_value(value, vr):
    """Make a value safe for a DCMTK dump line and the given VR."""
    value = "".join(ch for ch in value if ch >= " " and ch not in "[]\\\x7f")
    if vr == "CS":
        value = re.sub(r"[^A-Z0-9 _]", "", value.upper())
    if vr in ("DA", "TM", "UI"):
        value = re.sub(r"[^0-9.]", "", value)
    return value.strip()[: VR_MAX.get(vr, 64)]


def worklist_dump(row):
    """The DCMTK dump of an order row (a mapping with the orders columns)."""
    accession = row["accession"]
    extras = worklist_extras(Message(row["message"]))
    date, time_ = row["scheduled"][:10].replace("-", ""), row["scheduled"][11:19].replace(":", "")
    desc = row["procedure"] or ""
    lines = [
        ("0008,0005", "CS", "ISO_IR 192"),
        ("0008,0050", "SH", accession),
        ("0010,0010", "PN", row["patient_name"] or ""),
        ("0010,0020", "LO", row["patient_id"] or ""),
        ("0010,0030", "DA", extras["birth_date"]),
        ("0010,0040", "CS", extras["sex"]),
        ("0020,000d", "UI", row["study_uid"] or ""),
        ("0032,1060", "LO", desc),
        ("0040,0100", "SQ", None),
        ("fffe,e000", "-", None),
        ("0008,0060", "CS", row["modality"] or "OT"),
        ("0040,0001", "AE", row["station_aet"] or ""),
        ("0040,0002", "DA", date),
        ("0040,0003", "TM", time_),
        ("0040,0006", "PN", ""),
        ("0040,0007", "LO", desc),
        ("0040,0009", "SH", extras["step_id"] or "SPS" + accession[-13:]),
        ("0040,0010", "SH", ""),
        ("0040,0011", "SH", ""),
        ("0040,0020", "CS", "SCHEDULED"),
        ("fffe,e00d", "-", None),
        ("fffe,e0dd", "-", None),
        ("0040,1001", "SH", extras["requested_procedure_id"] or "RP" + accession[-14:]),
        ("0040,1003", "SH", "MEDIUM"),
        ("0008,1110", "SQ", None),
        ("fffe,e0dd", "-", None),
        ("0008,0090", "PN", ""),
        ("0040,2016", "LO", extras["placer_order"]),
    ]
    out = []
    for tag, vr, value in lines:
        if value is None:
            out.append(f"({tag}) {vr}")
        else:
            out.append(f"({tag}) {vr} [{dicom_value(value, vr)}]")
    return "\n".join(out) + "\n"


def _unlink_quietly(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


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

    @contextlib.contextmanager
    def _locked(self):
        fd = os.open(self.lockfile, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _previous(self, accession):
        try:
            with open(self.path(accession), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def _install(self, accession, tmp_path):
        os.chmod(tmp_path, 0o644)
        with self._locked():
            os.replace(tmp_path, self.path(accession))

    def _undo(self, accession, previous):
        """A callable that puts back ``previous`` (the entry's bytes before the change; None: no entry)."""

        def undo():
            with self.lock:
                if previous is None:
                    with self._locked():
                        _unlink_quietly(self.path(accession))
                    return
                fd, tmp = tempfile.mkstemp(prefix=".undo-", suffix=".tmp", dir=self.directory)
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(previous)
                    self._install(accession, tmp)
                finally:
                    _unlink_quietly(tmp)

        return undo

    def put(self, accession, dump_text):
        """Write the entry of ``accession`` from a dump; Reject AE when it cannot be written. Returns undo."""
        with self.lock:
            dump_path = tmp_wl = None
            try:
                previous = self._previous(accession)
                fd, dump_path = tempfile.mkstemp(prefix=".order-", suffix=".dump", dir=self.directory)
                tmp_wl = dump_path[: -len(".dump")] + ".tmp"
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
                        f"worklist entry could not be created (dump2dcm exit {proc.returncode}); "
                        "the order is not stored",
                        "207",
                    )
                self._install(accession, tmp_wl)
            except OSError as exc:
                raise Reject(
                    "AE",
                    f"worklist entry could not be written ({exc.strerror or type(exc).__name__}); "
                    "the order is not stored",
                    "207",
                ) from None
            finally:
                for leftover in (dump_path, tmp_wl):
                    if leftover:
                        _unlink_quietly(leftover)
        return self._undo(accession, previous)

    def delete(self, accession):
        """Remove the entry of ``accession``: (whether it existed, undo); Reject AE when it cannot be removed."""
        with self.lock:
            try:
                previous = self._previous(accession)
                if previous is None:
                    return False, lambda: None
                with self._locked():
                    os.unlink(self.path(accession))
            except FileNotFoundError:
                return False, lambda: None
            except OSError as exc:
                raise Reject(
                    "AE",
                    f"worklist entry could not be removed ({exc.strerror or type(exc).__name__}); "
                    "the order is not cancelled",
                    "207",
                ) from None
        return True, self._undo(accession, previous)
