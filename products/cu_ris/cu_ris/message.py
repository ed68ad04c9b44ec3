# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""HL7 v2 messages: parsing (escape sequences included), the order fields the RIS keeps, ACKs.

Copied from roles/ris_server/files/ris_mllp_listener.py (the lab listener this product replaces),
with the field reading split from the worklist writing: ``order_values`` gives the columns of an
order row, ``worklist_extras`` the few worklist attributes that are read again from the stored
message (birth date, sex, requested procedure and step ids, placer order number).

Field mapping: PID-3 patient id, PID-5 name, PID-7 birth date, PID-8 sex, ORC-1 order control,
ORC-2 placer order number, OBR-4 procedure code^description, OBR-18 accession number (fallback
ORC-3, then ORC-2), OBR-19 requested procedure id, OBR-20 scheduled procedure step id, OBR-21
scheduled station AE title, OBR-24 modality, OBR-36 scheduled date/time (fallback OBR-27.4,
ORC-7.4, then OBR-7).
"""

from __future__ import annotations

import datetime
import re
import uuid

SUPPORTED_VERSIONS = re.compile(r"^2\.[1-9](\.\d+)?$")
SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,16}$")
# HL7 DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]; a worklist entry needs at least the day.
DTM = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,4})?)?)?)?(?:[+-]\d{4})?$")


class Reject(Exception):
    """A message to answer with AE or AR (``err_code`` from HL7 table 0357, ``location`` for ERR-2)."""

    def __init__(self, code, text, err_code, location=""):
        super().__init__(text)
        self.code = code
        self.text = text
        self.err_code = err_code
        self.location = location


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
# Order fields
# --------------------------------------------------------------------------


def accession_of(msg):
    """(accession, ERR location, field name): OBR-18, else ORC-3, else ORC-2; Reject AE when unusable."""
    for seg, index in (("OBR", 18), ("ORC", 3), ("ORC", 2)):
        value = msg.field(seg, index, 1)
        if value:
            break
    else:
        raise Reject("AE", "OBR-18 accession number (or ORC-3/ORC-2) is required", "101", "OBR^1^18")
    location, label = f"{seg}^1^{index}", f"{seg}-{index}"
    if not SAFE_ID.match(value):
        raise Reject(
            "AE", f"{label} accession number must be 1 to 16 letters, digits, '.', '_' or '-'", "102", location
        )
    return value, location, label


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


def uid_for(accession):
    return "2.25.{}".format(uuid.uuid5(uuid.NAMESPACE_OID, "clinical-upgrade-ris:" + accession).int)


def order_values(msg, accession, default_station_aet="UNASSIGNED"):
    """The order columns an NW or XO sets (Reject AE when a field is missing or not valid).

    ``scheduled`` is the local date and time as sent, ``YYYY-MM-DDTHH:MM:SS``.
    """
    patient_id = msg.field("PID", 3, 1)
    if not patient_id:
        raise Reject("AE", "PID-3 patient identifier is required for an order", "101", "PID^1^3")
    worklist_extras(msg)  # PID-7 is checked when the order is accepted, not when its entry is written
    date, time_ = scheduled_datetime(msg)
    return {
        "patient_id": patient_id,
        "patient_name": "^".join(part.replace("^", " ") for part in msg.components("PID", 5)[:5]).rstrip("^"),
        "modality": msg.field("OBR", 24, 1) or "OT",
        "station_aet": station_aetitle(msg, default_station_aet),
        "scheduled": f"{date[:4]}-{date[4:6]}-{date[6:8]}T{time_[:2]}:{time_[2:4]}:{time_[4:6]}",
        "procedure": msg.field("OBR", 4, 2) or msg.field("OBR", 4, 1),
        "study_uid": uid_for(accession),
    }


def worklist_extras(msg):
    """The worklist attributes that have no column: read from the order's stored message."""
    sex = msg.field("PID", 8)[:1].upper()
    return {
        "birth_date": birth_date(msg),
        "sex": sex if sex in ("M", "F", "O") else "",
        "requested_procedure_id": msg.field("OBR", 19, 1),
        "step_id": msg.field("OBR", 20, 1),
        "placer_order": msg.field("ORC", 2, 1),
    }


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
    msh_fields = [
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
    segments = ["|".join(msh_fields), f"MSA|{code}|{control_id}|{hl7_escape(text)}"]
    if err_code:
        segments.append(f"ERR||{location}|{err_code}^{hl7_escape(text)}^HL70357|E")
    return "\r".join(segments)
